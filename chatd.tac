# twistd -ny chatd.tac: the same daemon as `twistd -n chatd`, on the same defaults,
# assembled by the same makeService.
from twisted.application import service

from chatd.tap import Options, makeService

options = Options()
options.parseOptions([])
application = service.Application("chatd")
makeService(options).setServiceParent(application)
