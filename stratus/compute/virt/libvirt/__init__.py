"""The libvirt driver: real QEMU/KVM guests (``LibvirtDriver``) and the daemons behind it."""

from stratus.compute.virt.libvirt.driver import LibvirtDriver

__all__ = ["LibvirtDriver"]
