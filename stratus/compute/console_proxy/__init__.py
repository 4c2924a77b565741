"""The ``console-proxy`` unit: a one-time token in, a websocket bridged to a guest's console.

``api.py`` is its ASGI app (mounted at ``/console``), ``bridges.py`` the byte pumps between a
websocket and a VNC server's TCP port or a serial pty.
"""
