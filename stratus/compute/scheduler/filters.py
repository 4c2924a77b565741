"""Host filters: each keeps the hosts that can take the request.

A filter is a named predicate over (host, request). Filters that a request cannot be
affected by (no zone asked, no server group, ...) are skipped for it, so a decision over
thousands of hosts only pays for what applies. The common filters also have a column form
(``mask``) that decides for every host of a ``HostView`` at once.

NumPy is ``arrays.np``, loaded where a mask is first computed, not with the module: a
scheduler that has not decided yet (every ``stratus up`` until its first boot) does not load
it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stratus.compute.scheduler import arrays
from stratus.compute.scheduler.host_state import HostState
from stratus.compute.scheduler.request_spec import RequestSpec

if TYPE_CHECKING:
    from stratus.compute.scheduler.arrays import Mask
    from stratus.compute.scheduler.host_view import HostView

    ColumnPredicate = Callable[[HostView, RequestSpec], Mask]

Predicate = Callable[[HostState, RequestSpec], bool]
#: Why a host did not pass a filter, in words for an operator.
Reason = Callable[[HostState, RequestSpec], str]
Applies = Callable[[RequestSpec], bool]


@dataclass(frozen=True)
class HostFilter:
    name: str
    passes: Predicate
    #: Said of each host the filter removed, when no host was left (``explain``).
    reason: Reason
    applies: Applies = lambda spec: True
    #: The same test over every host of a view at once, where it has one.
    mask: ColumnPredicate | None = None


def _compute(host: HostState, spec: RequestSpec) -> bool:
    return (host.enabled and host.up and host.host not in spec.ignore_hosts
            and spec.requested_host in (None, host.host))


def _compute_reason(host: HostState, spec: RequestSpec) -> str:
    if host.host in spec.ignore_hosts:
        return "left out of this request (a host already tried, or the server's own)"
    if spec.requested_host not in (None, host.host):
        return f"not the requested host {spec.requested_host}"
    return "compute service disabled" if not host.enabled else "compute service down"


def _compute_mask(view: HostView, spec: RequestSpec) -> Mask:
    mask = view.usable.copy()
    for name in spec.ignore_hosts:
        if (i := view.index.get(name)) is not None:
            mask[i] = False
    if spec.requested_host is not None:
        only = view.index.get(spec.requested_host)
        kept = arrays.np.zeros_like(mask)
        if only is not None:
            kept[only] = mask[only]
        mask = kept
    return mask


def _zone(host: HostState, spec: RequestSpec) -> bool:
    return host.zone == spec.availability_zone


def _zone_reason(host: HostState, spec: RequestSpec) -> str:
    return f"in zone {host.zone}, not {spec.availability_zone}"


def _zone_mask(view: HostView, spec: RequestSpec) -> Mask:
    return view.zone == view.zone_code(spec.availability_zone or "")


def _resources(host: HostState, spec: RequestSpec) -> bool:
    return host.fits(spec.flavor.resources)


def _resources_reason(host: HostState, spec: RequestSpec) -> str:
    short = []
    for rc, amount in spec.flavor.resources.items():
        if amount <= 0:
            continue
        if amount > host.free(rc):
            short.append(f"{rc} {amount} wanted, {host.free(rc):g} free")
        elif amount > host.max_unit.get(rc, 0):
            short.append(f"{rc} {amount} wanted, at most {host.max_unit.get(rc, 0)} "
                         "for one server")
    return "; ".join(short)


def _resources_mask(view: HostView, spec: RequestSpec) -> Mask:
    mask = arrays.np.ones(len(view), dtype=bool)
    for rc, amount in spec.flavor.resources.items():
        if amount > 0:
            mask &= (view.available[rc] >= amount) & (view.max_unit[rc] >= amount)
    return mask


def _image_properties(host: HostState, spec: RequestSpec) -> bool:
    props = spec.image_properties
    arch = props.get("hw_architecture") or props.get("architecture")
    if arch and arch != host.cpu_arch:
        return False
    hv_type = props.get("img_hv_type") or props.get("hypervisor_type")
    return not (hv_type and hv_type != host.hypervisor_type)


def _image_properties_reason(host: HostState, spec: RequestSpec) -> str:
    return (f"{host.cpu_arch} {host.hypervisor_type} host; the image asks for "
            + ", ".join(f"{k}={v}" for k, v in sorted(spec.image_properties.items())
                        if k in IMAGE_PROPERTIES))


def _affinity(host: HostState, spec: RequestSpec) -> bool:
    return not spec.group_hosts or host.host in spec.group_hosts


def _anti_affinity(host: HostState, spec: RequestSpec) -> bool:
    return host.host not in spec.group_hosts


def _group_reason(host: HostState, spec: RequestSpec) -> str:
    if spec.group_policy == "affinity":
        return "holds none of the server group's servers"
    return "already holds a server of the server group"


def _aggregate_extra_specs(host: HostState, spec: RequestSpec) -> bool:
    for key, wanted in spec.flavor.extra_specs.items():
        scope, _, name = key.partition(":")
        if scope != "aggregate_instance_extra_specs":
            continue
        if host.aggregate_metadata.get(name) != wanted:
            return False
    return True


def _aggregate_reason(host: HostState, spec: RequestSpec) -> str:
    wrong = []
    for key, wanted in sorted(spec.flavor.extra_specs.items()):
        scope, _, name = key.partition(":")
        if scope == "aggregate_instance_extra_specs" and \
                host.aggregate_metadata.get(name) != wanted:
            wrong.append(f"{name}={host.aggregate_metadata.get(name)!r}, the flavor wants "
                         f"{wanted!r}")
    return "aggregate metadata " + "; ".join(wrong)


#: The image properties ``ImagePropertiesFilter`` reads.
IMAGE_PROPERTIES = ("hw_architecture", "architecture", "img_hv_type", "hypervisor_type")

FILTERS: dict[str, HostFilter] = {f.name: f for f in (
    HostFilter("ComputeFilter", _compute, _compute_reason, mask=_compute_mask),
    HostFilter("AvailabilityZoneFilter", _zone, _zone_reason, lambda s: bool(s.availability_zone),
               mask=_zone_mask),
    HostFilter("ResourceFilter", _resources, _resources_reason, mask=_resources_mask),
    HostFilter("ImagePropertiesFilter", _image_properties, _image_properties_reason,
               lambda s: any(k in s.image_properties for k in IMAGE_PROPERTIES)),
    HostFilter("ServerGroupAffinityFilter", _affinity, _group_reason,
               lambda s: s.group_policy == "affinity"),
    HostFilter("ServerGroupAntiAffinityFilter", _anti_affinity, _group_reason,
               lambda s: s.group_policy == "anti-affinity"),
    HostFilter("AggregateInstanceExtraSpecsFilter", _aggregate_extra_specs, _aggregate_reason,
               lambda s: any(k.startswith("aggregate_instance_extra_specs:")
                             for k in s.flavor.extra_specs)),
)}

DEFAULT_FILTERS = tuple(FILTERS)


def resolve(names: tuple[str, ...] | list[str]) -> list[HostFilter]:
    unknown = [n for n in names if n not in FILTERS]
    if unknown:
        raise ValueError(f"unknown scheduler filters: {', '.join(unknown)}")
    return [FILTERS[n] for n in names]
