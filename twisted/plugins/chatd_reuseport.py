# The reuseport:PORT server endpoint (chatd/reuseport.py): several chatd processes on one port.
from chatd.reuseport import ReusePortParser

reuseport = ReusePortParser()
