"""The compute host's networking: an instance's ports, over the network service's REST API
(``stratus.core.clients.network.NetworkClient``).

Steps 26-38 of the seeds: the host creates (or adopts) one port per requested network, binds
it to itself (``binding:host_id``), and turns the bound ports into the instance's
``network_info``. Requests carry the user's token, so the user's quotas, ownership and
isolation hold, plus this host's service token (``X-Service-Token``), which admits the
binding attributes the user alone may not set and keeps a long build going after the
user's token expires.

Contracts:

* ``allocate`` either returns every requested interface or raises ``NetworkError`` having
  deleted the ports it created (ports the user passed in are only unbound).
* ``deallocate`` is idempotent: it deletes the ports the host created for the instance and
  unbinds the ones the user brought; a port already gone is not an error.
* No network endpoint in the catalog means no network service: allocation returns no
  interfaces, so compute runs alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from stratus.compute.objects import VifInfo, VifIP
from stratus.core.clients.network import NetworkClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import NotFound, StratusError

LOG = logging.getLogger(__name__)

T = TypeVar("T")

#: Nova's tag for ports a host created, so they go when the instance goes.
DEVICE_OWNER_PREFIX = "compute:"


class NetworkError(Exception):
    """The network service refused or failed; the message is safe to show as a fault."""


class HostNetwork:
    def __init__(self, client: NetworkClient) -> None:
        self.client = client

    @staticmethod
    async def _do(doing: str, call: Awaitable[T]) -> T:
        """``call``'s result; a refusal or failure is ``NetworkError`` saying what failed."""
        try:
            return await call
        except StratusError as exc:
            raise NetworkError(f"Could not {doing}: {exc.message}") from exc

    # Allocation ---------------------------------------------------------------------------

    async def _networks_for(self, ctx: RequestContext, base: str,
                            requested: Any) -> list[dict[str, Any]]:
        """What to plug: ``[{"network_id"?, "port_id"?, "fixed_ip"?}]``."""
        if requested == "none":
            return []
        if isinstance(requested, list) and requested:
            return [{"network_id": r.get("uuid"), "port_id": r.get("port"),
                     "fixed_ip": r.get("fixed_ip")} for r in requested]
        # "auto" or unspecified: the one network the project can use, as Nova picks it. An
        # external network (the floating IPs' ``public``) is never picked: guests reach it
        # through a router, as Nova's auto-allocation leaves external networks out.
        networks = await self._do("list networks", self.client.list_networks(
            ctx, base, ["id", "shared", "project_id", "router:external"]))
        networks = [n for n in networks if not n.get("router:external")]
        own = [n for n in networks if n.get("project_id") == ctx.project_id]
        candidates = own or [n for n in networks if n.get("shared")]
        if not candidates:
            LOG.info("no network available to project %s; booting without one",
                     ctx.project_id)
            return []
        if len(candidates) > 1:
            raise NetworkError("Multiple possible networks found, use a Network ID to be "
                               "more specific.")
        return [{"network_id": candidates[0]["id"]}]

    async def allocate(self, ctx: RequestContext, instance_uuid: str, host: str, *,
                       requested: Any, zone: str = "nova",
                       security_groups: list[str] | None = None,
                       before_bind: Callable[[list[str]], None] | None = None,
                       ) -> list[VifInfo]:
        """Create (or adopt) the instance's ports, then bind them to ``host``.

        ``before_bind(port_ids)`` runs once every port exists and none is bound yet: the
        moment to start listening for ``network-vif-plugged``, which binding sets off.
        """
        base = await self.client.find_base()
        if base is None:
            return []
        wanted = await self._networks_for(ctx, base, requested)
        ports: list[tuple[dict[str, Any], bool]] = []  # (port, preserve_on_delete)
        owner = {"device_id": instance_uuid, "device_owner": f"{DEVICE_OWNER_PREFIX}{zone}"}
        try:
            for item in wanted:
                if item.get("port_id"):
                    ports.append((await self._adopt(ctx, base, item["port_id"], owner), True))
                    continue
                body: dict[str, Any] = {"network_id": item["network_id"], **owner}
                if item.get("fixed_ip"):
                    body["fixed_ips"] = [{"ip_address": item["fixed_ip"]}]
                groups = await self._security_group_ids(ctx, base, security_groups)
                if groups is not None:
                    body["security_groups"] = groups
                ports.append((await self._do(f"create a port on {item['network_id']}",
                                             self.client.create_port(ctx, base, body)), False))
            if before_bind is not None:
                before_bind([port["id"] for port, _ in ports])
            bound = []
            for port, preserve in ports:
                bound.append((await self._do(f"bind port {port['id']} to {host}",
                                             self.client.update_port(
                                                 ctx, base, port["id"],
                                                 {"binding:host_id": host})), preserve))
            return [await self._vif(ctx, base, port, preserve) for port, preserve in bound]
        except BaseException:
            await self._release(ctx, base, ports)
            raise

    async def attach_port(self, ctx: RequestContext, instance_uuid: str, host: str,
                          port_id: str, *, preserve: bool, zone: str = "nova",
                          before_bind: Callable[[list[str]], None] | None = None,
                          ) -> VifInfo:
        """One more interface for a running instance (``os-interface``): take the port
        compute-api chose or made, bind it to ``host`` and describe it. On failure the port
        is released again (unbound, or deleted when ``preserve`` is False) and
        ``NetworkError`` raised."""
        base = await self.client.find_base()
        if base is None:
            raise NetworkError("This cloud has no network service.")
        owner = {"device_id": instance_uuid, "device_owner": f"{DEVICE_OWNER_PREFIX}{zone}"}
        try:
            port = await self._adopt(ctx, base, port_id, owner)
            if before_bind is not None:
                before_bind([port_id])
            bound = await self._do(f"bind port {port_id} to {host}", self.client.update_port(
                ctx, base, port_id, {"binding:host_id": host}))
            return await self._vif(ctx, base, bound or port, preserve)
        except BaseException:
            await self._release(ctx, base, [({"id": port_id}, preserve)])
            raise

    async def release_port(self, ctx: RequestContext, port_id: str, preserve: bool) -> None:
        """Give one interface back: unbind the user's port, delete one made for the
        instance; a port already gone is not an error."""
        base = await self.client.find_base()
        if base is not None:
            await self._release_port(ctx, base, port_id, preserve)

    async def _adopt(self, ctx: RequestContext, base: str, port_id: str,
                     owner: dict[str, str]) -> dict[str, Any]:
        """Take a port the user created for this instance (``--nic port-id=``)."""
        found = await self._do(f"find port {port_id}",
                               self.client.show_port(ctx, base, port_id))
        device_id = found.get("device_id")
        if device_id and device_id != owner["device_id"]:
            raise NetworkError(f"Port {port_id} is still in use.")
        return await self._do(f"take port {port_id}",
                              self.client.update_port(ctx, base, port_id, dict(owner)))

    async def _security_group_ids(self, ctx: RequestContext, base: str,
                                  names: list[str] | None) -> list[str] | None:
        """Nova passes security groups by name or id; the network service wants ids."""
        if not names or names == ["default"]:
            return None
        groups = await self._do("list security groups", self.client.list_security_groups(
            ctx, base, ["id", "name"]))
        ids = []
        for name in names:
            match = [g["id"] for g in groups if name in (g["id"], g["name"])]
            if len(match) != 1:
                raise NetworkError(f"Security group {name} not found or ambiguous.")
            ids.append(match[0])
        return ids

    async def _vif(self, ctx: RequestContext, base: str, port: dict[str, Any],
                   preserve: bool) -> VifInfo:
        network = await self._do(f"read network {port['network_id']}",
                                 self.client.show_network(ctx, base, port["network_id"]))
        subnet_ids = sorted({ip["subnet_id"] for ip in port.get("fixed_ips") or []})
        subnets: dict[str, dict[str, Any]] = {}
        if subnet_ids:
            subnets = {s["id"]: s for s in await self._do(
                "read subnets", self.client.list_subnets(ctx, base, subnet_ids))}
        ips = []
        for fixed in port.get("fixed_ips") or []:
            subnet = subnets.get(fixed["subnet_id"], {})
            ips.append(VifIP(
                address=fixed["ip_address"], version=int(subnet.get("ip_version", 4)),
                subnet_id=fixed["subnet_id"], cidr=subnet.get("cidr", ""),
                gateway=subnet.get("gateway_ip"),
                dns_nameservers=list(subnet.get("dns_nameservers") or []),
                routes=[{"destination": r["destination"], "nexthop": r["nexthop"]}
                        for r in subnet.get("host_routes") or []],
                dhcp=bool(subnet.get("enable_dhcp", True))))
        details = port.get("binding:vif_details") or {}
        return VifInfo(
            id=port["id"], address=port["mac_address"], network_id=port["network_id"],
            network_name=network.get("name") or port["network_id"],
            mtu=int(network.get("mtu") or 1500), type=port.get("binding:vif_type") or "bridge",
            devname=f"tap{port['id'][:11]}", bridge=str(details.get("bridge_name", "")),
            preserve_on_delete=preserve, ips=ips)

    # Moving between hosts (shelve offload, unshelve) ----------------------------------------

    async def rebind(self, ctx: RequestContext, network_info: list[dict[str, Any]],
                     host: str, *, before_bind: Callable[[list[str]], None] | None = None,
                     ) -> list[VifInfo]:
        """Bind the instance's existing ports (its ``network_info``) to ``host``; their new
        interfaces, each keeping whether the host made it (``preserve_on_delete``) and the
        floating addresses of its fixed ones (a floating IP follows its port and fixed
        address, which a move keeps; ``network-changed`` refreshes them otherwise)."""
        base = await self.client.find_base()
        if base is None or not network_info:
            return []
        if before_bind is not None:
            before_bind([vif["id"] for vif in network_info])
        vifs = []
        for vif in network_info:
            port = await self._do(f"bind port {vif['id']} to {host}", self.client.update_port(
                ctx, base, vif["id"], {"binding:host_id": host}))
            bound = await self._vif(ctx, base, port, bool(vif.get("preserve_on_delete")))
            floating = {ip.get("address"): ip.get("floating_ips", [])
                        for ip in vif.get("ips", [])}
            vifs.append(bound.model_copy(update={"ips": [
                ip.model_copy(update={"floating_ips": list(floating.get(ip.address, []))})
                for ip in bound.ips]}))
        return vifs

    async def unbind(self, ctx: RequestContext, network_info: list[dict[str, Any]]) -> None:
        """Unbind the instance's ports from their host; they stay the instance's (its
        addresses kept for an unshelve). A port already gone is no error."""
        base = await self.client.find_base()
        if base is None:
            return
        for vif in network_info:
            try:
                await self.client.update_port(ctx, base, vif["id"], {"binding:host_id": ""})
            except NotFound:
                continue
            except StratusError as exc:
                raise NetworkError(f"Could not unbind port {vif['id']}: {exc.message}") \
                    from exc

    # Release ------------------------------------------------------------------------------

    async def _release(self, ctx: RequestContext, base: str,
                       ports: list[tuple[dict[str, Any], bool]]) -> None:
        for port, preserve in ports:
            try:
                await self._release_port(ctx, base, port["id"], preserve)
            except NetworkError:
                LOG.exception("could not release port %s", port["id"])

    async def _release_port(self, ctx: RequestContext, base: str, port_id: str,
                            preserve: bool) -> None:
        try:
            if preserve:
                await self.client.update_port(ctx, base, port_id, {
                    "device_id": "", "device_owner": "", "binding:host_id": ""})
            else:
                await self.client.delete_port(ctx, base, port_id)
        except NotFound:
            pass  # already gone: what we wanted
        except StratusError as exc:
            raise NetworkError(f"Could not release port {port_id}: {exc.message}") from exc

    async def deallocate(self, ctx: RequestContext, instance_uuid: str,
                         network_info: list[dict[str, Any]] | None = None) -> None:
        """Delete the ports this host made for the instance; unbind the user's own.

        The ports are found by ``device_id`` (so a build that died before recording its
        ``network_info`` leaves nothing behind); ``network_info`` says which to keep.
        """
        base = await self.client.find_base()
        if base is None:
            return
        preserved = {vif["id"] for vif in network_info or [] if vif.get("preserve_on_delete")}
        ports = await self._do("list the instance's ports", self.client.list_ports(
            ctx, base, {"device_id": instance_uuid, "fields": ["id", "device_owner"]}))
        for port in ports:
            if port.get("device_owner", "").startswith(DEVICE_OWNER_PREFIX) or \
                    port["id"] in preserved:
                await self._release_port(ctx, base, port["id"], port["id"] in preserved)

    # Refresh ------------------------------------------------------------------------------

    async def with_floating_ips(self, ctx: RequestContext,
                                network_info: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``network_info`` with each fixed address's floating IPs as the network service
        has them now (on ``network-changed``)."""
        port_ids = [vif["id"] for vif in network_info]
        base = await self.client.find_base()
        if base is None or not port_ids:
            return network_info
        fips = await self._do("list the floating IPs of the instance's ports",
                              self.client.list_floatingips(ctx, base, {
                                  "port_id": port_ids, "fields": [
                                      "port_id", "fixed_ip_address", "floating_ip_address"]}))
        refreshed = []
        for vif in network_info:
            ips = []
            for ip in vif.get("ips", []):
                floating = sorted(f["floating_ip_address"] for f in fips
                                  if f.get("port_id") == vif["id"]
                                  and f.get("fixed_ip_address") == ip.get("address"))
                ips.append({**ip, "floating_ips": floating})
            refreshed.append({**vif, "ips": ips})
        return refreshed
