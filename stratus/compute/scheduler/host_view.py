"""Hosts as columns: the scheduler's view, shaped for deciding over thousands of hosts.

Each column is a NumPy array with one entry per host, so the common filters (enabled and
up, zone, resources) and the resource weighers run as a handful of array operations
instead of Python calls per host. Filters and weighers without a column form run, as
plain predicates, on the hosts the array filters left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from stratus.compute.placement import RESOURCE_CLASSES
from stratus.compute.scheduler import arrays
from stratus.compute.scheduler.host_state import HostState

if TYPE_CHECKING:
    from stratus.compute.scheduler.arrays import Floats, Ints, Mask


class HostView:
    def __init__(self, hosts: Iterable[HostState]) -> None:
        self.hosts: list[HostState] = list(hosts)
        self.index = {h.host: i for i, h in enumerate(self.hosts)}
        self._zone_codes: dict[str, int] = {}
        count = len(self.hosts)
        self.usable: Mask = arrays.np.zeros(count, dtype=bool)
        self.zone: Ints = arrays.np.zeros(count, dtype=arrays.np.int64)
        self.available: dict[str, Floats] = {rc: arrays.np.zeros(count) for rc in RESOURCE_CLASSES}
        self.max_unit: dict[str, Floats] = {rc: arrays.np.zeros(count) for rc in RESOURCE_CLASSES}
        for i, host in enumerate(self.hosts):
            self._fill(i, host)

    def __len__(self) -> int:
        return len(self.hosts)

    def zone_code(self, zone: str) -> int:
        return self._zone_codes.setdefault(zone, len(self._zone_codes))

    def _fill(self, i: int, host: HostState) -> None:
        self.usable[i] = host.enabled and host.up
        self.zone[i] = self.zone_code(host.zone)
        for rc in RESOURCE_CLASSES:
            self.available[rc][i] = host.available.get(rc, 0.0)
            self.max_unit[rc][i] = host.max_unit.get(rc, 0)

    def replace(self, host: HostState) -> None:
        """Put a freshly loaded state of one host in place of the old one."""
        i = self.index.get(host.host)
        if i is None:
            self.hosts.append(host)
            self.index[host.host] = len(self.hosts) - 1
            self.usable = arrays.np.append(self.usable, False)
            self.zone = arrays.np.append(self.zone, 0)
            for rc in RESOURCE_CLASSES:
                self.available[rc] = arrays.np.append(self.available[rc], 0.0)
                self.max_unit[rc] = arrays.np.append(self.max_unit[rc], 0.0)
            i = len(self.hosts) - 1
        self.hosts[i] = host
        self._fill(i, host)

    def remove(self, name: str) -> None:
        """A host that is gone: it stays in the arrays but can never be chosen."""
        i = self.index.get(name)
        if i is not None:
            self.usable[i] = False

    def consume(self, host: HostState, resources: dict[str, int]) -> None:
        host.consume(resources)
        i = self.index[host.host]
        for rc, amount in resources.items():
            if rc in self.available:
                self.available[rc][i] -= amount
