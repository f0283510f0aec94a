"""The web front-end: one chat page and a WebSocket speaking JSON, on the same chat service.

- ``json_wire``: every shape the socket sends, as JSON text messages (docs/web.md).
- ``origin``: which pages may open the socket.
- ``site``: the twisted.web resource tree: the page, its static files, ``/ws``.
- ``static/``: the page itself, plain HTML, CSS and JavaScript, shipped in the package.
"""
