"""The network domain's parts used directly (no HTTP): typed commands in, rows out, on one
transaction each, on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.db.paging import SortKey
from stratus.network.caller import network_caller
from stratus.network.errors import OverQuota, PolicyNotAuthorized
from stratus.network.filters import ListQuery
from stratus.network.networks import NetworkUpdate, NewNetwork
from stratus.network.ports import FixedIpRequest, NewPort
from stratus.network.quotas import QUOTA_RESOURCES
from stratus.network.service import NetworkRuntime
from stratus.network.subnets import NewSubnet


@pytest.fixture
async def runtime(db_url: str, tmp_path: Path) -> AsyncIterator[NetworkRuntime]:
    rt = NetworkRuntime(Settings(data_dir=tmp_path, database_url=db_url,
                                 network={"quota_network": 2}))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_networks_subnets_ports_through_the_parts(runtime: NetworkRuntime) -> None:
    caller = network_caller(RequestContext(user_id="u", project_id="p1", roles=["member"]),
                            runtime.enforcer)
    async with runtime.service() as svc:
        net = await svc.networks.create_network(caller, NewNetwork(name="blue"))
        subnet = await svc.subnets.create_subnet(caller, NewSubnet(
            network_id=net.id, cidr="10.3.0.0/29", name="blue-sub"))
        port = await svc.ports.create_port(caller, NewPort(
            network_id=net.id, name="p", fixed_ips=(FixedIpRequest(ip_address="10.3.0.4"),)))
        assert subnet.gateway_ip == "10.3.0.1"
        assert [a.ip_address for a in port.fixed_ips] == ["10.3.0.4"]
        assert len(port.security_groups) == 1  # the project's default group, made here
    async with runtime.service() as svc:
        renamed = await svc.networks.update_network(caller, net.id, NetworkUpdate(name="b2"))
        assert renamed.name == "b2" and renamed.shared is False  # UNSET fields stay
        with pytest.raises(PolicyNotAuthorized):  # provider attributes are the admin's
            await svc.networks.update_network(caller, net.id, NetworkUpdate(provider=True))
    async with runtime.service(write=False) as svc:
        page = await svc.ports.list_ports(caller, ListQuery(
            filters={"fixed_ips": ["ip_address=10.3.0.4"]}, sort=(SortKey("name"),),
            limit=1))
        assert [p.id for p in page.rows] == [port.id] and not page.more
        limits = await svc.quotas.limits("p1")
        assert set(limits) == set(QUOTA_RESOURCES) and limits["network"] == 2


async def test_a_quota_holds_inside_one_transaction(runtime: NetworkRuntime) -> None:
    caller = network_caller(RequestContext(user_id="u", project_id="p2", roles=["member"]),
                            runtime.enforcer)
    async with runtime.service() as svc:
        await svc.networks.create_network(caller, NewNetwork(name="a"))
        await svc.networks.create_network(caller, NewNetwork(name="b"))
        with pytest.raises(OverQuota):
            await svc.networks.create_network(caller, NewNetwork(name="c"))


async def test_a_finished_service_is_freed_without_the_cycle_collector(
        runtime: NetworkRuntime) -> None:
    """Once its transaction is over, a request's service (its parts, session and rows) goes
    by reference counting alone: left to the cyclic collector, every request's leftovers
    made its passes cost a share of the CPU of each request."""
    gc.collect()
    gc.disable()
    try:
        async with runtime.service() as svc:
            parts = [weakref.ref(svc), weakref.ref(svc.ports), weakref.ref(svc.floating_ips),
                     weakref.ref(svc.txn.session)]
        del svc
        assert [ref() for ref in parts] == [None] * len(parts)
    finally:
        gc.enable()
