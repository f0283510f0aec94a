"""The IRC front-end: irssi, WeeChat and HexChat users in the same rooms as line users.

Pure parts (no sockets): ``message`` parses and serialises IRC lines, ``formatting`` cleans
text typed in IRC clients, ``numerics`` builds the server's replies, ``caps`` negotiates
IRCv3 capabilities, ``render`` turns chat events into IRC lines.
"""
