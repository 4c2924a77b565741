"""Real DHCP and the metadata path without a VM, against the bus contract.

A namespace plays the guest: busybox ``udhcpc`` gets its lease from the agent's dnsmasq and
installs the routes it is given; then it reads metadata through the proxy on
169.254.169.254. Upstream is a small metadata service on loopback that checks the proxy's
signature as metadata-api does (the end-to-end test on the real network-api and metadata-api
lives with the other cloud tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from stratus.core.bus import RPCServer, Target
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.tls import TLSFiles, ensure_certificates
from stratus.network.agents.dhcp import DhcpAgentManager, DhcpAgentOptions
from stratus.network.metadata_proxy import ProxyApp, sign_instance_id
from stratus.network.objects import bridge_name
from stratus.network.rpcapi import DHCP_AGENT_TOPIC, DhcpAgentAPI
from stratus.stack import Stack
from tests.integration.network_agents.conftest import (
    AgentBus,
    eventually,
    hosts_text,
    make_network,
    make_port,
)
from tests.integration.network_agents.guest import Guest

SECRET = "metadata-test-secret"
CTX = RequestContext(user_id="network-server", project_id="service", roles=["service"])


@dataclass
class Upstream:
    """Checks the proxy's headers; remembers what each request carried."""

    url: str = ""
    user_data: dict[str, bytes] = field(default_factory=dict)
    seen: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def root(_: Request) -> Response:
            return PlainTextResponse("1.0\nlatest")

        async def anything(request: Request) -> Response:
            self.seen.append(dict(request.headers))
            instance = request.headers.get("x-instance-id")
            signature = request.headers.get("x-instance-id-signature", "")
            if not instance or not request.headers.get("x-tenant-id"):
                return PlainTextResponse("missing headers", 400)
            expected = hmac.new(SECRET.encode(), instance.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, signature):
                return PlainTextResponse("Invalid proxy request signature.", 403)
            path = request.url.path
            if path == "/openstack/latest/meta_data.json":
                return JSONResponse({"uuid": instance,
                                     "project_id": request.headers["x-tenant-id"]})
            if path == "/openstack/latest/user_data" and instance in self.user_data:
                return Response(self.user_data[instance], media_type="text/plain")
            return PlainTextResponse("Not found", 404)

        return Starlette(routes=[Route("/", root),
                                 Route("/{path:path}", anything, methods=["GET", "POST"])])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving_upstream(tls: TLSFiles | None = None) -> AsyncIterator[Upstream]:
    state = Upstream()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    state.url = f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    https = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)} if tls else {}
    server = _Server(uvicorn.Config(state.app(), log_config=None, lifespan="off", **https))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    try:
        yield state
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with serving_upstream() as state:
        yield state


async def test_guest_gets_its_lease_routes_and_metadata(
        agent_bus: AgentBus, upstream: Upstream, tmp_path: Path,
        kernel_cleanup: Callable[..., None]) -> None:
    network = make_network()
    port = make_port(network, 23)
    upstream.user_data[port.device_id] = b"#cloud-config\nhostname: guest\n"
    network = network.model_copy(update={"ports": [port]})
    agent_bus.server.networks[network.id] = network
    kernel_cleanup(network=network.id, directory=tmp_path / "dhcp" / network.id)
    agent = DhcpAgentManager("meta-host", agent_bus.api, DhcpAgentOptions(
        state_dir=tmp_path / "dhcp", metadata_url=upstream.url, metadata_secret=SECRET))
    rpc = RPCServer(agent_bus.transport, Target(DHCP_AGENT_TOPIC, server="meta-host"), agent,
                    agent.METHODS)
    await rpc.start()
    await agent.start()
    try:
        kinds = {(s.agent_type, s.binary) for s in agent_bus.server.states}
        assert kinds == {("DHCP agent", "stratus-dhcp-agent"),
                         ("Metadata agent", "stratus-metadata-proxy")}
        dhcp_ip = agent.networks[network.id].dhcp_port.fixed_ips[0].ip_address
        prefix = network.subnets[0].cidr.rsplit(".", 1)[0]
        async with Guest(bridge_name(network.id), port.mac_address,
                         tmp_path / "guest") as guest:
            lease = await guest.dhcp()
            assert lease["ip"] == port.fixed_ips[0].ip_address
            assert lease["mask"] == "24"
            assert lease["router"] == f"{prefix}.1"
            assert lease["mtu"] == "1450"
            assert lease["hostname"] == f"host-{prefix.replace('.', '-')}-23"
            assert lease["domain"] == "openstacklocal"
            assert lease["dns"] == "192.0.2.53"
            assert await guest.addresses() >= {f"{prefix}.23/24"}
            routes = await guest.routes()
            assert routes["169.254.169.254/32"] == dhcp_ip
            assert routes["0.0.0.0/0"] == f"{prefix}.1"

            base = "http://169.254.169.254"
            meta = await guest.get(f"{base}/openstack/latest/meta_data.json")
            assert meta.status_code == 200, meta.text
            assert meta.json() == {"uuid": port.device_id, "project_id": port.project_id}
            user_data = await guest.get(f"{base}/openstack/latest/user_data")
            assert user_data.status_code == 200
            assert user_data.content == b"#cloud-config\nhostname: guest\n"
            sent = upstream.seen[-1]
            assert sent["x-forwarded-for"] == port.fixed_ips[0].ip_address
            assert sent["x-tenant-id"] == port.project_id

            # Headers a guest forges are replaced by the proxy's own.
            other = str(uuid.uuid4())
            forged = await guest.get(f"{base}/openstack/latest/meta_data.json", headers={
                "X-Instance-ID": other, "X-Tenant-ID": "evil", "X-Forwarded-For": "10.9.9.9",
                "X-Instance-ID-Signature": "0" * 64})
            assert forged.json()["uuid"] == port.device_id
            assert upstream.seen[-1]["x-instance-id"] == port.device_id

            # Upstream answers pass through (404 for a path it does not know).
            missing = await guest.get(f"{base}/openstack/latest/nothing-here")
            assert missing.status_code == 404
            root = await guest.get(f"{base}/")
            assert root.status_code == 200 and root.text == "1.0\nlatest"

            # An address no port holds is not identified.
            await guest.add_address(f"{prefix}.99/24")
            stranger = await guest.get(f"{base}/openstack/latest/meta_data.json",
                                       source=f"{prefix}.99")
            assert stranger.status_code == 404

            # metadata-api unreachable → 503.
            served = agent.networks[network.id]
            assert served.proxy is not None
            served.proxy.app.upstream = "http://127.0.0.1:9"
            down = await guest.get(f"{base}/openstack/latest/meta_data.json")
            assert down.status_code == 503
    finally:
        await rpc.stop()
        await agent.stop()


async def test_proxy_app_against_a_real_upstream(upstream: Upstream) -> None:
    """The proxy's HTTP side alone (no namespace): identification by source address, what
    it strips and adds, the body limit, and how upstream answers are mapped."""
    network = make_network()
    port = make_port(network, 40)
    by_address = {port.fixed_ips[0].ip_address: port}
    async with httpx.AsyncClient() as upstream_client:
        app = ProxyApp(network.id, by_address.get, upstream.url, SECRET, upstream_client)

        def guest(address: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=app,
                                                                   client=(address, 40000)),
                                     base_url="http://169.254.169.254")

        async with guest(port.fixed_ips[0].ip_address) as client:
            meta = await client.get("/openstack/latest/meta_data.json?x=1",
                                    headers={"X-Tenant-ID": "other"})
            assert meta.status_code == 200
            assert meta.json() == {"uuid": port.device_id, "project_id": port.project_id}
            assert meta.headers["content-type"] == "application/json"
            sent = upstream.seen[-1]
            assert sent["x-instance-id-signature"] == sign_instance_id(SECRET, port.device_id)
            assert (await client.post("/openstack/latest/password",
                                      content=b"x" * (64 * 1024 + 1))).status_code == 413
            assert (await client.get("/")).text == "1.0\nlatest"
        async with guest("10.255.255.1") as client:
            assert (await client.get("/openstack/latest/meta_data.json")).status_code == 404
        # A wrong key: metadata-api's 403 comes back as 403.
        app.secret = "not-the-secret"
        async with guest(port.fixed_ips[0].ip_address) as client:
            assert (await client.get("/openstack/latest/meta_data.json")).status_code == 403


async def test_the_proxy_verifies_an_https_metadata_api_with_the_clouds_ca(
        tmp_path: Path) -> None:
    """With TLS (``stratus up --tls``) metadata-api is HTTPS: the client the DHCP agent's
    proxies get (``Stack.http_client``) verifies it with the cloud's CA; one that does not
    trust the CA reaches nothing (503, never an unverified answer)."""
    tls = ensure_certificates(tmp_path / "tls", ["127.0.0.1"])
    network = make_network()
    port = make_port(network, 41)
    by_address = {port.fixed_ips[0].ip_address: port}
    stack = Stack(Settings(data_dir=tmp_path, tls={"ca_file": tls.ca}))
    async with serving_upstream(tls) as upstream, stack.exits:
        for client, status in ((stack.http_client(), 200), (httpx.AsyncClient(), 503)):
            app = ProxyApp(network.id, by_address.get, upstream.url, SECRET, client)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(
                    app=app, client=(port.fixed_ips[0].ip_address, 40000)),
                    base_url="http://169.254.169.254") as guest:
                meta = await guest.get("/openstack/latest/meta_data.json")
                assert meta.status_code == status, meta.text
            await client.aclose()
        assert len(upstream.seen) == 1


async def test_an_address_given_to_a_new_port_is_leased_to_it(
        agent_bus: AgentBus, tmp_path: Path, kernel_cleanup: Callable[..., None]) -> None:
    """A deleted port's lease is dropped: its address, handed to a new port (another MAC),
    is leased to that port at once, not after the old lease expires."""
    network = make_network()
    old = make_port(network, 33)
    agent_bus.server.networks[network.id] = network.model_copy(update={"ports": [old]})
    kernel_cleanup(network=network.id, directory=tmp_path / "dhcp" / network.id)
    agent = DhcpAgentManager("lease-host", agent_bus.api,
                             DhcpAgentOptions(state_dir=tmp_path / "dhcp"))
    rpc = RPCServer(agent_bus.transport, Target(DHCP_AGENT_TOPIC, server="lease-host"),
                    agent, agent.METHODS)
    await rpc.start()
    await agent.start()
    try:
        api = DhcpAgentAPI(agent_bus.transport)
        async with Guest(bridge_name(network.id), old.mac_address, tmp_path / "g1") as guest:
            assert (await guest.dhcp())["ip"] == old.fixed_ips[0].ip_address
        leases = tmp_path / "dhcp" / network.id / "leases"
        assert old.mac_address in leases.read_text()
        await api.port_deleted(CTX, network.id, old.id)
        new = make_port(network, 33)
        await api.port_updated(CTX, new)
        await eventually(lambda: new.mac_address in hosts_text(tmp_path / "dhcp" / network.id),
                         message="new port")
        async with Guest(bridge_name(network.id), new.mac_address, tmp_path / "g2") as guest:
            assert (await guest.dhcp())["ip"] == new.fixed_ips[0].ip_address
    finally:
        await rpc.stop()
        await agent.stop()


async def _no_lease(guest: Guest) -> str:
    """udhcpc's output when it got no lease (it gives up after its ten tries)."""
    try:
        lease = await guest.dhcp()
    except AssertionError as exc:
        return str(exc)
    raise AssertionError(f"a lease was offered: {lease}")


async def test_a_port_made_while_dnsmasq_runs_is_leased_without_a_reload(
        agent_bus: AgentBus, tmp_path: Path, kernel_cleanup: Callable[..., None]) -> None:
    """A port created after dnsmasq started is in its own file of ``hosts/``, which dnsmasq
    reads by itself (inotify): the guest gets its lease from the same process, never
    signalled. A deleted port's address is no longer offered: one that held a lease is
    released (dnsmasq restarted without it), one that did not is dropped by a SIGHUP."""
    network = make_network()
    first = make_port(network, 40)
    agent_bus.server.networks[network.id] = network.model_copy(update={"ports": [first]})
    state = tmp_path / "dhcp" / network.id
    kernel_cleanup(network=network.id, directory=state)
    agent = DhcpAgentManager("inotify-host", agent_bus.api,
                             DhcpAgentOptions(state_dir=tmp_path / "dhcp"))
    rpc = RPCServer(agent_bus.transport, Target(DHCP_AGENT_TOPIC, server="inotify-host"),
                    agent, agent.METHODS)
    await rpc.start()
    await agent.start()
    try:
        api = DhcpAgentAPI(agent_bus.transport)
        process = agent.networks[network.id].process
        pid = process.pid
        assert pid is not None
        log = state / "dnsmasq.log"
        await eventually(lambda: log.exists() and "read " in log.read_text(),
                         message="dnsmasq read its files")
        # dnsmasq logs "read <file>" for the options file each time it (re)reads its files:
        # once at start, once more for every SIGHUP.
        opts_reads = log.read_text().count(f"read {state / 'opts'}")
        assert opts_reads == 1

        late, quiet = make_port(network, 41), make_port(network, 42)
        await asyncio.gather(api.port_updated(CTX, late), api.port_updated(CTX, quiet))
        await eventually(lambda: all(f"{state / 'hosts' / p.id}" in log.read_text()
                                     for p in (late, quiet)),
                         message="dnsmasq saw both new files")
        async with Guest(bridge_name(network.id), late.mac_address, tmp_path / "g1") as guest:
            assert (await guest.dhcp())["ip"] == late.fixed_ips[0].ip_address
        assert process.pid == pid and process.reloads == 0
        assert log.read_text().count(f"read {state / 'opts'}") == opts_reads
        assert late.mac_address in (state / "leases").read_text()

        # Deleted without a lease: its file goes and dnsmasq is reloaded, not restarted.
        await api.port_deleted(CTX, network.id, quiet.id)
        await eventually(lambda: process.reloads == 1, message="a reload")
        assert not (state / "hosts" / quiet.id).exists()
        assert process.pid == pid
        async with Guest(bridge_name(network.id), quiet.mac_address, tmp_path / "g2") as guest:
            await _no_lease(guest)
        assert log.read_text().count(f"read {state / 'opts'}") == opts_reads + 1
        assert "cannot read" not in log.read_text()  # the file was moved out, not deleted

        # Deleted with a lease: released (dnsmasq restarted without it), and not offered.
        await api.port_deleted(CTX, network.id, late.id)
        await eventually(lambda: process.pid not in (None, pid), message="restarted")
        assert late.mac_address not in (state / "leases").read_text()
        async with Guest(bridge_name(network.id), late.mac_address, tmp_path / "g3") as guest:
            await _no_lease(guest)
        # The first port, untouched, still gets its address.
        async with Guest(bridge_name(network.id), first.mac_address, tmp_path / "g4") as guest:
            assert (await guest.dhcp())["ip"] == first.fixed_ips[0].ip_address
    finally:
        await rpc.stop()
        await agent.stop()
