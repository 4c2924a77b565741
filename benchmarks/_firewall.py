"""The l2-agent firewall's cost of one member joining a remote group, in this process: what
every port created in a group costs each agent filtering a port of it.

The driver as it runs (libnftables in-process, the set's elements updated) against the way
it applied before (the whole ruleset rendered and replaced by an ``nft -f -`` process),
alternated in one run over the same ports, so the ratio holds whatever the machine's load.
CPU time: this process's and its finished children's (``nft``)."""

from __future__ import annotations

import resource
import uuid

from stratus.network.agents.l2.firewall import NftablesFirewall, render
from stratus.network.agents.l2.nft import NftProcess
from stratus.network.objects import (
    DeviceDetails,
    FixedIP,
    NetworkInfo,
    PortInfo,
    SecurityGroupInfo,
    SecurityGroupRuleInfo,
)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def member_apply_cpu(rounds: int, members: int = 1000) -> dict[str, float]:
    group_id = str(uuid.uuid4())
    group = SecurityGroupInfo(id=group_id, rules=[
        SecurityGroupRuleInfo(id=str(uuid.uuid4()), direction="ingress",
                              remote_group_id=group_id),
        SecurityGroupRuleInfo(id=str(uuid.uuid4()), direction="egress")])
    network = NetworkInfo(id=str(uuid.uuid4()), project_id="bench")
    port = PortInfo.model_validate({
        "id": str(uuid.uuid4()), "network_id": network.id, "project_id": "bench",
        "mac_address": "fa:16:3e:00:00:01", "device_owner": "compute:bench",
        "fixed_ips": [FixedIP(subnet_id="s", ip_address="10.200.0.1")],
        "security_group_ids": [group_id]})
    addresses = [f"10.200.{i // 250}.{i % 250 + 2}" for i in range(members)]

    def details() -> DeviceDetails:
        return DeviceDetails(port=port, network=network, security_groups=[group],
                             remote_group_members={group_id: list(addresses)})

    tag = uuid.uuid4().hex[:8]
    firewall = NftablesFirewall(table=f"sg-bench-fw-{tag}")
    replaced = f"sg-bench-fwr-{tag}"
    process = NftProcess()
    spent = {"now": 0.0, "before": 0.0}
    try:
        firewall.set_port(details())
        await firewall.apply()
        await process.run(render(replaced, [details()]))
        for i in range(rounds):
            addresses.append(f"10.201.{i // 250}.{i % 250 + 1}")
            started = _cpu()
            firewall.set_port(details())
            await firewall.apply()
            middle = _cpu()
            await process.run(render(replaced, [details()]))
            spent["now"] += middle - started
            spent["before"] += _cpu() - middle
    finally:
        await firewall.clear()
        await process.run(render(replaced, []))
    now, before = spent["now"] / rounds * 1e3, spent["before"] / rounds * 1e3
    return {"sg_member_apply_cpu_ms": now, "sg_member_replace_nft_cpu_ms": before,
            "sg_member_apply_cpu_ratio": before / now if now else float("nan")}
