"""Servers move with their volumes (two fake hosts, the volume service in the same process):
after a cold or live migration, a resize or an evacuation the volumes' attachments name the
new host, the old one holds none, and the guest there has them at the same devices; a
revert or a move that fails on the destination leaves them with the source."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from stratus.compute.agent.volumes import HostVolumes
from stratus.compute.models import Instance
from tests.integration.compute.test_boot_flow import upload_image
from tests.integration.compute.test_server_moves import force_down
from tests.integration.volume.test_server_volumes import (
    Cloud,
    _server,
    _volume,
    bfv_server,
    cloud,
)

__all__ = ["cloud"]


async def _act(cloud: Cloud, sid: str, body: dict[str, Any], version: str = "2.96") -> None:
    response = await cloud.compute("POST", f"/servers/{sid}/action", json=body,
                                   version=version)
    assert response.status_code in (200, 202, 204), (body, response.text)


async def _server_at(cloud: Cloud, sid: str, status: str) -> dict[str, Any]:
    return await cloud.wait("compute", f"/servers/{sid}", "server", status)


async def _held(cloud: Cloud, vid: str) -> list[tuple[str, str, str]]:
    """(server, host, device) of each live attachment of the volume, any status."""
    listed = (await cloud.volume("GET", f"/attachments?volume_id={vid}")).json()
    shown = (await cloud.volume("GET", f"/volumes/{vid}")).json()["volume"]
    where = {a["attachment_id"]: (a["server_id"], a["host_name"], a["device"])
             for a in shown["attachments"]}
    return [where.get(a["id"], (a["instance"], "not attached", a["status"]))
            for a in listed["attachments"]]


async def _settled(cloud: Cloud, vid: str, sid: str, host: str,
                   device: str) -> None:
    """The volume ends with one attachment: the server's, on ``host`` at ``device``."""
    for _ in range(200):
        if await _held(cloud, vid) == [(sid, host, device)]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{vid}: {await _held(cloud, vid)}, not on {host}")


async def _failed_back_on(cloud: Cloud, sid: str, source: str) -> None:
    """The server's latest move ended in error, and it is ACTIVE on ``source``."""
    for _ in range(200):
        rows = (await cloud.compute("GET", f"/os-migrations?instance_uuid={sid}")).json()
        if rows["migrations"][0]["status"] == "error":
            break
        await asyncio.sleep(0.05)
    assert (await _server_at(cloud, sid, "ACTIVE"))["OS-EXT-SRV-ATTR:host"] == source


def _guest_volumes(cloud: Cloud, host: str, sid: str) -> dict[str, Any]:
    (agent,) = [a for a in cloud.stack.agents if a.host == host]
    return agent.driver.volumes(sid)  # type: ignore[attr-defined, no-any-return]


def _fail_next(cloud: Cloud, host: str, operation: str) -> None:
    (agent,) = [a for a in cloud.stack.agents if a.host == host]
    agent.driver.fail_next(operation)  # type: ignore[attr-defined]


async def _with_a_volume(cloud: Cloud, name: str) -> tuple[str, str, str, str]:
    """A server with a volume attached at /dev/vdb: its id, host, the other host, the
    volume's id."""
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await _server(cloud, image_id, name)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    (other,) = [a.host for a in cloud.stack.agents if a.host != source]
    vid = (await _volume(cloud))["id"]
    attached = await cloud.compute("POST", f"/servers/{sid}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": vid}})
    assert attached.status_code == 200, attached.text
    await _settled(cloud, vid, sid, source, "/dev/vdb")
    return sid, source, other, vid


async def test_a_server_with_a_data_volume_moves_with_it(cloud: Cloud) -> None:
    sid, source, other, vid = await _with_a_volume(cloud, "heavy")
    listed = [{"id": vid, "delete_on_termination": False}]

    # Cold migration: the destination's guest has the volume, the source holds none.
    await _act(cloud, sid, {"migrate": None})
    moved = await _server_at(cloud, sid, "VERIFY_RESIZE")
    assert moved["OS-EXT-SRV-ATTR:host"] == other
    await _settled(cloud, vid, sid, other, "/dev/vdb")
    assert _guest_volumes(cloud, other, sid)["/dev/vdb"]["data"]["path"].endswith(vid)
    assert moved["os-extended-volumes:volumes_attached"] == listed
    # Reverted: back with the source.
    await _act(cloud, sid, {"revertResize": None})
    back = await _server_at(cloud, sid, "ACTIVE")
    assert back["OS-EXT-SRV-ATTR:host"] == source
    await _settled(cloud, vid, sid, source, "/dev/vdb")
    assert "/dev/vdb" in _guest_volumes(cloud, source, sid)

    # A resize that fails on the destination: the volume stays with the source.
    _fail_next(cloud, other, "finish_migration")
    await _act(cloud, sid, {"migrate": None})
    await _failed_back_on(cloud, sid, source)
    await _settled(cloud, vid, sid, source, "/dev/vdb")

    # Migrated and confirmed, then live-migrated back.
    await _act(cloud, sid, {"migrate": None})
    await _server_at(cloud, sid, "VERIFY_RESIZE")
    await _act(cloud, sid, {"confirmResize": None})
    assert (await _server_at(cloud, sid, "ACTIVE"))["OS-EXT-SRV-ATTR:host"] == other
    await _settled(cloud, vid, sid, other, "/dev/vdb")
    await _act(cloud, sid, {"os-migrateLive": {"host": None, "block_migration": "auto"}})
    for _ in range(200):
        live = await _server_at(cloud, sid, "ACTIVE")
        if live["OS-EXT-SRV-ATTR:host"] == source:
            break
        await asyncio.sleep(0.05)
    await _settled(cloud, vid, sid, source, "/dev/vdb")
    assert "/dev/vdb" in _guest_volumes(cloud, source, sid)
    assert live["os-extended-volumes:volumes_attached"] == listed

    # A live migration that fails on the destination leaves it with the source.
    _fail_next(cloud, other, "pre_live_migration")
    await _act(cloud, sid, {"os-migrateLive": {"host": None, "block_migration": "auto"}})
    await _failed_back_on(cloud, sid, source)
    await _settled(cloud, vid, sid, source, "/dev/vdb")


async def test_a_volume_backed_server_resizes_and_evacuates(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await bfv_server(cloud, image_id, "bfv")
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    (other,) = [a.host for a in cloud.stack.agents if a.host != source]
    (root,) = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
    await _settled(cloud, root["id"], sid, source, "/dev/vda")

    # A resize to a larger flavor (on either host): the root volume follows the guest.
    await _act(cloud, sid, {"resize": {"flavorRef": "2"}})
    resized = await _server_at(cloud, sid, "VERIFY_RESIZE")
    host = resized["OS-EXT-SRV-ATTR:host"]
    assert resized["flavor"]["original_name"] == "m1.small"
    await _settled(cloud, root["id"], sid, host, "/dev/vda")
    assert "/dev/vda" in _guest_volumes(cloud, host, sid)
    await _act(cloud, sid, {"confirmResize": None})
    await _server_at(cloud, sid, "ACTIVE")
    await _settled(cloud, root["id"], sid, host, "/dev/vda")

    # Its host dies: evacuated, the guest elsewhere boots the same root volume.
    await force_down(cloud.stack, host)
    await _act(cloud, sid, {"evacuate": {}}, "2.94")  # (from 2.95 it is left stopped)
    for _ in range(200):
        landed = await _server_at(cloud, sid, "ACTIVE")
        if landed["OS-EXT-SRV-ATTR:host"] != host:
            break
        await asyncio.sleep(0.05)
    dest = landed["OS-EXT-SRV-ATTR:host"]
    assert dest == (other if host == source else source)
    await _settled(cloud, root["id"], sid, dest, "/dev/vda")
    assert "/dev/vda" in _guest_volumes(cloud, dest, sid)
    assert landed["os-extended-volumes:volumes_attached"] == [
        {"id": root["id"], "delete_on_termination": False}]


async def _reserved_hostless(cloud: Cloud, vid: str, sid: str, device: str) -> None:
    """As Nova keeps an offloaded server's volumes: one attachment, the server's, reserved
    with no host (no connector); the volume ``reserved``, still listed on the server at its
    device."""
    assert await _held(cloud, vid) == [(sid, "not attached", "reserved")]
    (attachment,) = (await cloud.volume("GET", f"/attachments/detail?volume_id={vid}")
                     ).json()["attachments"]
    assert not attachment["connection_info"]
    assert (await cloud.volume("GET", f"/volumes/{vid}")).json()["volume"]["status"] == \
        "reserved"
    shown = (await cloud.compute("GET", f"/servers/{sid}", version="2.96")).json()["server"]
    assert shown["os-extended-volumes:volumes_attached"] == [
        {"id": vid, "delete_on_termination": False}]
    listed = (await cloud.compute("GET", f"/servers/{sid}/os-volume_attachments")).json()
    assert [(a["volumeId"], a["device"]) for a in listed["volumeAttachments"]] == [
        (vid, device)]


async def test_unshelved_elsewhere_a_server_has_its_data_volume(cloud: Cloud) -> None:
    sid, _, other, vid = await _with_a_volume(cloud, "shelved")

    await _act(cloud, sid, {"shelve": None})
    await _server_at(cloud, sid, "SHELVED_OFFLOADED")
    # Offloaded, the server keeps its volume reserved with no host: the old host's
    # attachment (and connection) gone.
    await _reserved_hostless(cloud, vid, sid, "/dev/vdb")
    # An unshelve that fails on the host leaves it so again.
    _fail_next(cloud, other, "spawn")
    await _act(cloud, sid, {"unshelve": {"host": other}}, "2.91")
    for _ in range(200):
        failed = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
        actions = (await cloud.compute("GET", f"/servers/{sid}/os-instance-actions")).json()
        if failed["OS-EXT-STS:task_state"] is None and \
                actions["instanceActions"][0]["action"] == "unshelve":
            break
        await asyncio.sleep(0.05)
    assert failed["status"] == "SHELVED_OFFLOADED", failed
    assert failed["OS-EXT-SRV-ATTR:host"] is None
    await _reserved_hostless(cloud, vid, sid, "/dev/vdb")
    # Unshelved: attached on the new host at its device.
    await _act(cloud, sid, {"unshelve": {"host": other}}, "2.91")
    back = await _server_at(cloud, sid, "ACTIVE")
    assert back["OS-EXT-SRV-ATTR:host"] == other
    await _settled(cloud, vid, sid, other, "/dev/vdb")
    assert "/dev/vdb" in _guest_volumes(cloud, other, sid)
    assert back["os-extended-volumes:volumes_attached"] == [
        {"id": vid, "delete_on_termination": False}]

    # Offloaded again, then deleted: the reservation goes, the volume is free.
    await _act(cloud, sid, {"shelve": None})
    await _server_at(cloud, sid, "SHELVED_OFFLOADED")
    await _reserved_hostless(cloud, vid, sid, "/dev/vdb")
    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204
    await cloud.wait("volume", f"/volumes/{vid}", "volume", "available")
    assert await _held(cloud, vid) == []


async def test_an_offloaded_volume_backed_server_keeps_its_root_reserved(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await bfv_server(cloud, image_id, "bfv-shelved")
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    (other,) = [a.host for a in cloud.stack.agents if a.host != source]
    (root,) = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
    await _settled(cloud, root["id"], sid, source, "/dev/vda")
    await _act(cloud, sid, {"shelve": None})
    await _server_at(cloud, sid, "SHELVED_OFFLOADED")
    await _reserved_hostless(cloud, root["id"], sid, "/dev/vda")
    await _act(cloud, sid, {"unshelve": {"host": other}}, "2.91")
    back = await _server_at(cloud, sid, "ACTIVE")
    assert back["OS-EXT-SRV-ATTR:host"] == other
    await _settled(cloud, root["id"], sid, other, "/dev/vda")
    assert "/dev/vda" in _guest_volumes(cloud, other, sid)


async def test_no_volume_is_attached_or_detached_mid_move(cloud: Cloud) -> None:
    """A server with a task (here: a resize under way) refuses both with Nova's 409: the
    volume would be connected to, or left on, the host the server is leaving."""
    sid, source, _, vid = await _with_a_volume(cloud, "busy")
    spare = (await _volume(cloud))["id"]
    runtime = cloud.stack.compute
    assert runtime is not None
    async with runtime.db.session() as session:
        instance = await session.get(Instance, sid)
        assert instance is not None
        instance.task_state = "resize_migrating"
        await session.commit()
    attach = await cloud.compute("POST", f"/servers/{sid}/os-volume_attachments",
                                 json={"volumeAttachment": {"volumeId": spare}})
    detach = await cloud.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    for refused in (attach, detach):
        assert refused.status_code == 409, refused.text
        assert "task_state resize_migrating" in refused.json()[
            "conflictingRequest"]["message"]
    assert (await cloud.volume("GET", f"/volumes/{spare}")).json()["volume"][
        "status"] == "available"
    await _settled(cloud, vid, sid, source, "/dev/vdb")


def _conductor_reads() -> float:
    """Read-only conductor calls sent so far in this process (``migration_get``,
    ``instance_get``)."""
    return sum(REGISTRY.get_sample_value("stratus_bus_messages_sent_total", {
        "kind": "call", "topic": "conductor", "method": method}) or 0.0
        for method in ("migration_get", "instance_get"))


async def test_a_move_reads_in_its_steps_and_asks_for_volumes_once_per_arrival(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each host's step of a move gets the migration and the server from the step's own
    conductor call (no read apart), and the volume service is asked for the server's
    attachments once per host it arrives on (``take_over``): a server found with no volume
    there has no other host's attachments for ``keep_only`` to settle. Only a live
    migration's source, which does not see what its destination found, asks again."""
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    sid = (await _server(cloud, image_id, "light"))["id"]
    asked: list[str] = []
    held = HostVolumes._held

    async def counted(self: HostVolumes, *args: Any) -> Any:
        asked.append(self.host)
        return await held(self, *args)

    monkeypatch.setattr(HostVolumes, "_held", counted)
    reads = _conductor_reads()

    await _act(cloud, sid, {"resize": {"flavorRef": "2"}})  # arrives: 1
    await _server_at(cloud, sid, "VERIFY_RESIZE")
    await _act(cloud, sid, {"revertResize": None})  # back on the source: 2
    await _server_at(cloud, sid, "ACTIVE")
    await _act(cloud, sid, {"migrate": None})  # 3
    await _server_at(cloud, sid, "VERIFY_RESIZE")
    await _act(cloud, sid, {"confirmResize": None})
    host = (await _server_at(cloud, sid, "ACTIVE"))["OS-EXT-SRV-ATTR:host"]
    await _act(cloud, sid, {"os-migrateLive": {"host": None, "block_migration": "auto"}})
    for _ in range(200):  # 4, and the source's after it
        if (await _server_at(cloud, sid, "ACTIVE"))["OS-EXT-SRV-ATTR:host"] != host:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"{sid} stayed on {host}")

    assert _conductor_reads() == reads
    assert len(asked) == 5, asked
