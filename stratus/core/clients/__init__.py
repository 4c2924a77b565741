"""REST clients one service uses to call another, all on ``base.ServiceClient``.

Each module names one callee (``image``, ``volume``, ``network``, ``compute``). Nothing here
imports a service package: the callers (compute, volume, network) import these.
"""
