"""Hypervisor drivers behind one interface: ``fake`` (scale and tests) and ``libvirt``."""
