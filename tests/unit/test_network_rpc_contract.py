"""network-api's agent RPC server serves exactly the methods of ``NetworkServerAPI``."""

import inspect

from stratus.network.manager import NetworkServerManager
from stratus.network.rpcapi import NetworkServerAPI


def test_every_client_method_is_served() -> None:
    client = {name for name, _ in inspect.getmembers(NetworkServerAPI,
                                                      inspect.iscoroutinefunction)
              if not name.startswith("_")}
    assert set(NetworkServerManager.METHODS) == client
    for name in client:
        served = inspect.signature(getattr(NetworkServerManager, name)).parameters
        sent = inspect.signature(getattr(NetworkServerAPI, name)).parameters
        assert list(served) == list(sent), name  # same argument names, same order
