"""The dashboard: a browser client of the public APIs, served at ``/dashboard``.

It reaches the services only through the catalog of the user's token, with that token on
every call (policy stays in the APIs), as the CLI does. The token never reaches the browser:
it stays in a server-side session named by an opaque cookie (``sessions``).
"""
