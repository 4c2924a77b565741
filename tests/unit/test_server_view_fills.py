"""Server views' parts from the network service: a page's port chunks are asked at once (a
page of 200 servers is one round trip for its ports, not one per chunk)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from stratus.compute import server_security_groups, volume_attach
from stratus.compute.server_security_groups import fill_security_groups
from stratus.compute.servers import SERVERS_PER_REQUEST
from stratus.core.context import RequestContext


class ChunksTogether:
    """A network client whose port lists answer only once every chunk has been asked:
    asked one after another, the first would wait for ever."""

    def __init__(self, chunks: int) -> None:
        self.expected = chunks
        self.asked: list[list[str]] = []
        self.all_asked = asyncio.Event()

    async def find_base(self, context: RequestContext) -> str:
        return "http://network/v2.0"

    async def list_ports(self, context: RequestContext, base: str,
                         params: dict[str, Any]) -> list[dict[str, Any]]:
        self.asked.append(params["device_id"])
        if len(self.asked) == self.expected:
            self.all_asked.set()
        await self.all_asked.wait()
        return [{"device_id": d, "security_groups": ["g1"]} for d in params["device_id"]]

    async def find_security_groups(self, context: RequestContext, base: str,
                                   params: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": "g1", "name": "web"}]


async def test_the_port_chunks_of_a_page_are_asked_at_once(monkeypatch: Any) -> None:
    monkeypatch.setattr(server_security_groups, "VIEW_TIMEOUT", 2.0)
    servers = [{"id": f"srv-{n}", "security_groups": [{"name": "stored"}]}
               for n in range(SERVERS_PER_REQUEST * 2 + 1)]
    network = ChunksTogether(chunks=3)
    runtime: Any = SimpleNamespace(clients=SimpleNamespace(network=network))
    await fill_security_groups(runtime, RequestContext(), servers)
    assert sorted(len(chunk) for chunk in network.asked) == [1, SERVERS_PER_REQUEST,
                                                              SERVERS_PER_REQUEST]
    # Serially the first chunk would have waited out the bound and left the stored names.
    assert all(s["security_groups"] == [{"name": "web"}] for s in servers)


class Attachments:
    """A volume client that records the servers each attachments list asks about and
    answers only once every chunk has been asked."""

    def __init__(self, chunks: int) -> None:
        self.expected = chunks
        self.asked: list[list[str]] = []
        self.all_asked = asyncio.Event()

    async def list_attachments(self, context: RequestContext, base: str,
                               instance_ids: list[str]) -> list[dict[str, Any]]:
        self.asked.append(list(instance_ids))
        if len(self.asked) == self.expected:
            self.all_asked.set()
        await self.all_asked.wait()
        return [{"instance": i, "volume_id": f"vol-{i}", "status": "attached"}
                for i in instance_ids]


async def test_a_page_asks_the_attachments_of_its_servers_only(monkeypatch: Any) -> None:
    monkeypatch.setattr(volume_attach, "VIEW_TIMEOUT", 2.0)
    ids = [f"srv-{n}" for n in range(SERVERS_PER_REQUEST * 2 + 1)]
    volumes = Attachments(chunks=3)
    context = RequestContext(token={"catalog": [{"type": "block-storage", "endpoints": [
        {"interface": "public", "url": "http://volume/v3/p"}]}]})
    attached = await volume_attach.volumes_attached(volumes, context, ids)  # type: ignore[arg-type]
    assert sorted(i for chunk in volumes.asked for i in chunk) == sorted(ids)
    assert sorted(len(chunk) for chunk in volumes.asked) == [1, SERVERS_PER_REQUEST,
                                                             SERVERS_PER_REQUEST]
    assert attached == {i: [f"vol-{i}"] for i in ids}
