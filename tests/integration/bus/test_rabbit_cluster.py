"""The seed's RabbitMQ: three real nodes clustered (``tests/rabbit_cluster.py``), quorum
queues, Stratus connected with a three-host transport URL. The node a process is connected to
leaves service in the middle of a stream (of casts; of boots through every compute unit) and
stays out: nothing is lost, the process carries on through another node, and the queues are
still served by the two left.

Serial: three Erlang VMs start here, and a stream's pace matters while a node is lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.core.bus.transport.amqp import AmqpTransport
from tests.conftest import backend_unavailable
from tests.integration.bus.test_rabbitmq import COUNT, stream_through
from tests.integration.clouds import CloudStarter, TestCloud
from tests.rabbit_cluster import Node, RabbitCluster, available

pytestmark = [pytest.mark.rabbitmq, pytest.mark.serial]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    reason = available()
    if reason is not None:
        backend_unavailable(reason)
    instance = RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"))
    try:
        instance.start()
        yield instance
    finally:
        instance.close()


@pytest.fixture
def vhost(cluster: RabbitCluster) -> Iterator[str]:
    """A virtual host of its own on the cluster for one test; every node back in service
    after it."""
    name = f"stratus-{uuid.uuid4().hex[:8]}"
    first = cluster.nodes[0]
    cluster.ctl(first, "add_vhost", name)
    cluster.ctl(first, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        for node in cluster.nodes:
            if "running" not in _app_state(cluster, node):
                cluster.start_app(node)
        cluster.ctl(first, "delete_vhost", name)


def _app_state(cluster: RabbitCluster, node: Node) -> str:
    try:
        return cluster.ctl(node, "eval", "case rabbit:is_running() of true -> running; "
                                         "false -> stopped end.")
    except RuntimeError:
        return "stopped"


def _quorum_queues(cluster: RabbitCluster, node: Node, vhost: str) -> dict[str, dict[str, Any]]:
    """Each quorum queue of ``vhost`` as ``node`` sees it: its members and which are online."""
    out = cluster.ctl(node, "list_queues", "-p", vhost, "--formatter", "json", "name", "type",
                      "members", "online", "messages")
    import json

    return {q["name"]: q for q in json.loads(out) if q["type"] == "quorum"}


async def test_a_node_lost_during_a_stream_of_casts_loses_none(
        cluster: RabbitCluster, vhost: str) -> None:
    url = cluster.url(vhost)
    lost: list[Node] = []
    queues_after: dict[str, dict[str, Any]] = {}

    async def lose_the_consumers_node() -> None:
        # Both transports start on the URL's first node; the one serving the casts is there.
        node = cluster.nodes[0]
        await asyncio.to_thread(cluster.stop_app, node)
        lost.append(node)
        survivor = cluster.nodes[1]
        queues_after.update(await asyncio.to_thread(_quorum_queues, cluster, survivor, vhost))

    began = time.monotonic()
    stream = await stream_through(url, lose_the_consumers_node)
    took = time.monotonic() - began
    assert lost, "the node was stopped"
    assert stream.manager.applied == set(range(COUNT)), "every cast handled"
    assert stream.connections_made == [2, 2], "each process reconnected once, to another node"
    # The cast queue is a quorum queue on all three nodes; with one lost, two serve it.
    cast_queues = {name: q for name, q in queues_after.items() if "stream" in name}
    assert cast_queues, queues_after
    for name, queue in cast_queues.items():
        assert sorted(queue["members"]) == sorted(n.name for n in cluster.nodes), name
        assert lost[0].name not in queue["online"] and len(queue["online"]) == 2, queue
    duplicates = sum(n - 1 for n in stream.manager.invocations.values())
    print(f"\ncluster stream: {COUNT} casts in {took:.1f}s, slowest cast "
          f"{stream.slowest_cast:.2f}s, handled twice: {duplicates}")


BOOTS = 60


async def test_a_node_lost_during_a_stream_of_boots_loses_none(
        cluster: RabbitCluster, vhost: str, db_url: str, tmp_path: Path) -> None:
    """Every compute unit in one process on the cluster (identity, image, compute API,
    conductor, scheduler, a fake compute agent, network API): boots go out at a steady pace,
    the node the process is connected to is stopped after a sixth of them, and every boot
    still ends ACTIVE."""
    starter = CloudStarter(db_url, tmp_path, "cluster-admin-pw")
    units = ("identity-api", "image-api", "compute-api", "conductor", "scheduler",
             "compute-agent", "network-api")
    try:
        cloud = await starter.start(
            TestCloud, units, cluster.url(vhost), network={"backend": "noop"},
            compute={"virt_driver": "fake", "fake_hosts": 2, "host": "cl",
                     "fake_memory_mb": 65536, "fake_vcpus": 64,
                     "reserved_host_memory_mb": 0})
        transport = await cloud.stack.transport()
        assert isinstance(transport, AmqpTransport)
        connected = transport.connected_to
        assert connected is not None
        node = cluster.node_at(connected.port)
        admin = cloud.admin.headers
        image = (await cloud.client.post("/image/v2/images", headers=admin, json={
            "name": "tiny", "disk_format": "raw", "container_format": "bare",
            "visibility": "public"})).json()
        upload = await cloud.client.put(f"/image/v2/images/{image['id']}/file", headers={
            **admin, "Content-Type": "application/octet-stream"}, content=b"\0" * 4096)
        assert upload.status_code == 204, upload.text
        quota = await cloud.client.put(
            f"/compute/v2.1/os-quota-sets/{cloud.admin.project_id}", headers=admin,
            json={"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
        assert quota.status_code == 200, quota.text

        server_ids: list[str] = []

        async def boot(index: int) -> None:
            response = await cloud.client.post("/compute/v2.1/servers", headers={
                **admin, "OpenStack-API-Version": "compute 2.90"}, json={
                "server": {"name": f"c-{index}", "imageRef": image["id"], "flavorRef": "1",
                           "networks": "none"}})
            assert response.status_code == 202, response.text
            server_ids.append(response.json()["server"]["id"])

        began = time.monotonic()
        boots = []
        for index in range(BOOTS):
            boots.append(asyncio.create_task(boot(index)))
            if index == BOOTS // 6:
                await asyncio.to_thread(cluster.stop_app, node)
                stopped_at = time.monotonic()
            await asyncio.sleep(0.1)
        await asyncio.gather(*boots)
        reconnected = transport.connected_to
        assert reconnected is not None and reconnected.port != node.port

        deadline = time.monotonic() + 180
        while True:
            listed = await cloud.client.get("/compute/v2.1/servers/detail", headers=admin)
            servers = listed.json()["servers"]
            states = {s["id"]: (s["status"], s.get("OS-EXT-STS:task_state")) for s in servers}
            if all(state == ("ACTIVE", None) for state in states.values()) \
                    and len(states) == BOOTS:
                break
            errors = [s for s in servers if s["status"] == "ERROR"]
            assert not errors, [s.get("fault") for s in errors][:3]
            assert time.monotonic() < deadline, sorted(states.values())
            await asyncio.sleep(0.5)
        assert set(states) == set(server_ids)
        print(f"\ncluster boots: {BOOTS} ACTIVE, {time.monotonic() - began:.1f}s in all, "
              f"{time.monotonic() - stopped_at:.1f}s after the node stopped; reconnected "
              f"to {reconnected.port} (was {node.port})")
    finally:
        await starter.aclose()
