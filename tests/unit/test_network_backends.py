"""Choosing the network backend (``stratus.network.choice``), and the noop backend as a backend."""

from __future__ import annotations

import asyncio

import pytest

from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.network import backends, choice
from stratus.network.objects import DeviceDetails, NetworkInfo, PortInfo


def settings(backend: str | None) -> Settings:
    return Settings(network={"backend": backend})


def test_configured_backend_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(choice.os, "geteuid", lambda: 0)
    monkeypatch.setattr(choice.shutil, "which", lambda name: "/usr/sbin/dnsmasq")
    assert backends.backend_name(settings("noop")) == "noop"
    monkeypatch.setattr(choice.os, "geteuid", lambda: 1000)
    assert backends.backend_name(settings("linuxbridge")) == "linuxbridge"
    with pytest.raises(ValueError, match="unknown"):
        backends.backend_name(settings("ovs"))


@pytest.mark.parametrize(("uid", "dnsmasq", "expected"), [
    (0, "/usr/sbin/dnsmasq", "linuxbridge"),
    (0, None, "noop"),
    (1000, "/usr/sbin/dnsmasq", "noop"),
])
def test_automatic_choice(monkeypatch: pytest.MonkeyPatch, uid: int, dnsmasq: str | None,
                          expected: str) -> None:
    monkeypatch.setattr(choice.os, "geteuid", lambda: uid)
    monkeypatch.setattr(choice.shutil, "which", lambda name: dnsmasq)
    assert backends.backend_name(settings(None)) == expected


def test_noop_backend_wires_at_once_and_tells_no_one() -> None:
    noop = backends.create_backend("noop", None)
    assert noop.name == "noop" and noop.wires_at_once
    port = PortInfo(id="p", network_id="n", project_id="x", mac_address="fa:16:3e:00:00:01")
    network = NetworkInfo(id="n", project_id="x")
    ctx = RequestContext()

    async def every_call() -> None:
        await noop.network_updated(ctx, network)
        await noop.network_deleted(ctx, "n")
        await noop.port_updated(ctx, port)
        await noop.port_deleted(ctx, "n", "p")
        await noop.port_bound(ctx, "h", DeviceDetails(port=port, network=network))
        await noop.port_unbound(ctx, "h", "p", "n")

    asyncio.run(every_call())  # no bus: nothing to send to, nothing raised
    with pytest.raises(ValueError, match="bus"):
        backends.create_backend("linuxbridge", None)


async def test_member_changes_arriving_while_one_is_sent_go_as_the_next_notice() -> None:
    """A burst of creates in a group: the first change goes at once, those arriving while
    it is on its way go together as the next notice, and every caller returns once its
    own change went out."""
    sent: list[dict[str, list[str]]] = []
    gate, sending = asyncio.Event(), asyncio.Event()

    class L2:
        async def security_group_members_changed(self, ctx: RequestContext,
                                                 members: dict[str, list[str]]) -> None:
            sent.append(members)
            sending.set()
            await gate.wait()

    notices = backends._MemberNotices(L2())  # type: ignore[arg-type]
    ctx = RequestContext()
    first = asyncio.create_task(notices.add(ctx, {"g": ["10.0.0.5"]}))
    await sending.wait()
    later = [asyncio.create_task(notices.add(ctx, members)) for members in (
        {"g": ["10.0.0.6"]}, {"g": ["10.0.0.7"], "h": ["10.0.0.7"]}, {"g": ["10.0.0.6"]})]
    await asyncio.sleep(0.01)
    assert sent == [{"g": ["10.0.0.5"]}] and not any(t.done() for t in [first, *later])
    gate.set()
    await asyncio.gather(first, *later)
    assert sent == [{"g": ["10.0.0.5"]}, {"g": ["10.0.0.6", "10.0.0.7"], "h": ["10.0.0.7"]}]
