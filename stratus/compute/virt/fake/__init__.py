"""The fake driver: guests that exist only in memory, for tests and scale runs."""

from stratus.compute.virt.fake.driver import FakeDriver, FakeDriverOptions

__all__ = ["FakeDriver", "FakeDriverOptions"]
