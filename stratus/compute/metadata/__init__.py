"""metadata-api: what guests (cloud-init) read at 169.254.169.254, through the proxies.

``content`` builds the documents from an instance's data, free of HTTP; ``api`` is the ASGI
app that identifies the instance from the proxy's signed headers and serves them.
"""
