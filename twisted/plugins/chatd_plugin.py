from twisted.application.service import ServiceMaker

chatd = ServiceMaker("chatd", "chatd.tap", "Chat daemon with an RFC 862 echo service", "chatd")
