# twistd -ny chatd.tac: the same daemon as `twistd -n chatd`, on the same defaults,
# assembled by the same makeService.
import os

from twisted.application import service

from chatd.tap import Options, makeService

options = Options()
# twistd passes a tac file no arguments: CHATD_CONFIG may name a configuration file instead.
config = os.environ.get("CHATD_CONFIG")
options.parseOptions(["--config", config] if config else [])
application = service.Application("chatd")
makeService(options).setServiceParent(application)
