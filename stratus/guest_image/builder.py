"""Build the project's test guest: a small bootable qcow2 from a few Debian packages.

``build(cache_dir)`` returns the path of ``stratus-test-guest-<key>.qcow2`` under
``cache_dir``, building it only when no image with the same key exists. The key hashes the
exact package versions (``linux-image-<abi>-cloud-amd64``, ``busybox-static``, and the SSH
server's ``dropbear-bin`` with the libraries it links, as the machine's apt sources offer
them) and the guest's scripts, so a kernel update or an init change gives a new image and
anything else reuses the cached one.

How (root, no package is installed on the host):

1. ``apt-get download`` the packages from the configured Debian mirror; ``dpkg-deb -x``
   them into a scratch directory.
2. The kernel's virtio modules and their dependencies (read from each module's ``depends=``
   modinfo field; the package carries no ``modules.dep``, that is made by depmod at install),
   busybox and the guest's init (``scripts.py``) go into a gzip'd newc initramfs written
   here; the guest runs from it and never mounts a root file system. Dropbear with its ELF
   interpreter and the shared libraries it needs (followed through each file's
   ``DT_NEEDED`` entries, so only those files of ``libc6`` and the others) go under
   ``/ssh`` of the disk's file system instead: every boot pays for the initramfs's size
   (the boot loader reads it through the BIOS, the kernel unpacks it), and only a guest
   given a key pair mounts the disk to start the SSH server.
3. ``mke2fs -d`` makes an ext2 file system holding ``/boot`` (kernel, initramfs,
   ``extlinux.conf``) and ``/ssh``, filling the whole disk; ``extlinux --install`` (which
   needs it mounted: a loop mount for a moment) writes its boot sector at the start of the
   disk, so SeaBIOS boots it from a virtio disk like any cloud image.
4. ``qemu-img convert`` to qcow2, renamed into place once complete.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stratus.core import hosttools
from stratus.guest_image import scripts

LOG = logging.getLogger(__name__)

KERNEL_META = "linux-image-cloud-amd64"
BUSYBOX = "busybox-static"
#: The SSH server (Tempest's validation tests log in as root with the server's key pair) and
#: the packages holding the libraries it is linked against (dropbear-bin's Depends and
#: libtomcrypt1's libgmp10).
SSH_PACKAGES = ("dropbear-bin", "libtomcrypt1", "libtommath1", "libgmp10", "zlib1g", "libcrypt1",
                "libc6")
DROPBEAR = "usr/sbin/dropbear"
#: Where the packages keep shared libraries (multiarch), searched in this order.
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
IMAGE_NAME = "stratus-test-guest"
#: Modules the guest loads, in this order after their dependencies: virtio disk and NIC
#: (the cloud kernel has them as modules), the ACPI button for soft power-off.
MODULES = ("virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
           "virtio_pci", "failover", "net_failover", "virtio_net", "virtio_blk",
           "button", "evdev")
#: The IDE cdrom and ISO 9660 for a config drive (Nova's libvirt driver attaches it as
#: ``hdd``): loaded apart, while the network comes up (probing the IDE bus takes ~2 s).
CONFIG_DRIVE_MODULES = ("ata_piix", "sr_mod", "isofs")
DISK_MB = 64
_DEPENDS_RE = re.compile(rb"(?:^|\x00)depends=([^\x00]*)\x00")


class GuestImageError(Exception):
    """The test guest could not be built; the message says which step failed."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True,
                              text=True, check=False)
    except FileNotFoundError as exc:
        raise GuestImageError(hosttools.missing(str(args[0]))) from exc
    if done.returncode != 0:
        raise GuestImageError(f"{' '.join(str(a) for a in args[:3])} failed "
                              f"({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def _candidates(*names: str) -> dict[str, tuple[str, str]]:
    """(version, Depends) of each package apt would install, from one ``apt-cache`` call
    (each call reads apt's whole cache: seconds on a loaded machine)."""
    out = _run("apt-cache", "show", "--no-all-versions", *names)
    found: dict[str, tuple[str, str]] = {}
    for stanza in out.split("\n\n"):
        fields = dict(line.split(":", 1) for line in stanza.splitlines()
                      if ":" in line and not line.startswith(" "))
        name = fields.get("Package", "").strip()
        if name and name not in found:
            found[name] = (fields.get("Version", "").strip(), fields.get("Depends", "").strip())
    for name in names:
        if not found.get(name, ("", ""))[0]:
            raise GuestImageError(f"apt knows no version of {name}; run apt-get update")
    return found


def resolve_packages() -> list[Package]:
    """The exact packages the image is built from (the kernel behind the meta-package)."""
    known = _candidates(KERNEL_META, BUSYBOX, *SSH_PACKAGES)
    depends = known[KERNEL_META][1]
    kernel = next((d.split()[0] for d in depends.split(",")
                   if d.strip().startswith("linux-image-")), None)
    if kernel is None:
        raise GuestImageError(f"{KERNEL_META} depends on no linux-image package")
    return [Package(kernel, _candidates(kernel)[kernel][0]),
            *(Package(name, known[name][0]) for name in (BUSYBOX, *SSH_PACKAGES))]


def cache_key(packages: Iterable[Package]) -> str:
    digest = hashlib.sha256()
    for package in packages:
        digest.update(package.spec.encode() + b"\n")
    for text in (scripts.INIT, scripts.UDHCPC_SCRIPT, scripts.POWEROFF,
                 scripts.EXTLINUX_CONF, *(scripts.SSH_FILES.values()), " ".join(MODULES),
                 " ".join(CONFIG_DRIVE_MODULES),
                 str(DISK_MB)):
        digest.update(text.encode() + b"\n")
    return digest.hexdigest()[:16]


def image_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{IMAGE_NAME}-{key}.qcow2"


def cached_image(cache_dir: Path) -> Path | None:
    """The newest image already built in ``cache_dir``, without asking apt."""
    found = sorted(cache_dir.glob(f"{IMAGE_NAME}-*.qcow2"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def build(cache_dir: Path, *, output: Path | None = None, force: bool = False) -> Path:
    """Build (or reuse) the test guest; returns its qcow2 (``output`` gets a copy)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    packages = resolve_packages()
    target = image_path(cache_dir, cache_key(packages))
    if force or not target.exists():
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=".build-", dir=cache_dir) as tmp:
            _build_into(Path(tmp), packages, target)
        LOG.info("built %s in %.1f s from %s", target.name, time.monotonic() - started,
                 ", ".join(p.spec for p in packages))
    if output is not None and output.resolve() != target.resolve():
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, output)
        return output
    return target


def _build_into(work: Path, packages: list[Package], target: Path) -> None:
    debs = work / "debs"
    root = work / "root"
    debs.mkdir()
    # The sandbox user (_apt) cannot write into our scratch directory; we are root anyway.
    _run("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
         *(p.spec for p in packages), cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        _run("dpkg-deb", "-x", deb, root)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise GuestImageError("the kernel package holds no /boot/vmlinuz-*")
    release = kernels[-1].name.removeprefix("vmlinuz-")
    kernel_dir = root / "lib" / "modules" / release / "kernel"
    modules = _module_closure(kernel_dir, MODULES)
    config_drive_modules = [m for m in _module_closure(kernel_dir,
                                                       (*MODULES, *CONFIG_DRIVE_MODULES))
                            if m not in modules]
    busybox = root / "bin" / "busybox"
    if not busybox.exists():
        raise GuestImageError("busybox-static holds no /bin/busybox")
    ssh = _elf_closure(root, DROPBEAR)

    disk = work / "disk"
    (disk / "boot").mkdir(parents=True)
    shutil.copyfile(kernels[-1], disk / "boot" / "vmlinuz")
    (disk / "boot" / "initrd.img").write_bytes(_initramfs(busybox, modules,
                                                          config_drive_modules))
    for name, path in ssh:
        target_file = disk / scripts.SSH_DIR / name
        target_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target_file)
        target_file.chmod(0o755)
    (disk / "boot" / "extlinux.conf").write_text(scripts.EXTLINUX_CONF)
    raw = work / "disk.raw"
    _run("mke2fs", "-q", "-F", "-t", "ext2", "-L", IMAGE_NAME, "-d", disk, raw,
         f"{DISK_MB}M")
    _install_extlinux(raw, work / "mnt")
    partial = target.with_name(f".partial-{target.name}")
    try:
        _run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, partial)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _install_extlinux(raw: Path, mountpoint: Path) -> None:
    mountpoint.mkdir()
    _run("mount", "-o", "loop", raw, mountpoint)
    try:
        _run("extlinux", "--install", mountpoint / "boot")
    finally:
        _run("umount", mountpoint)


def _module_closure(kernel_dir: Path, wanted: Iterable[str]) -> list[tuple[str, Path]]:
    """``wanted`` and their dependencies as (name, file), each after what it depends on."""
    index = {p.name.removesuffix(".ko").replace("-", "_"): p
             for p in kernel_dir.rglob("*.ko")}
    ordered: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in chain:
            raise GuestImageError(f"module dependency loop: {' -> '.join((*chain, name))}")
        path = index.get(name)
        if path is None:
            raise GuestImageError(f"kernel module {name} not found in {kernel_dir.name}")
        match = _DEPENDS_RE.search(path.read_bytes())
        for dep in (match.group(1).decode().split(",") if match else []):
            if dep:
                visit(dep.replace("-", "_"), (*chain, name))
        seen.add(name)
        ordered.append((name, path))

    for name in wanted:
        visit(name, ())
    return ordered


def _inside(root: Path, relative: str) -> Path:
    """The file ``relative`` names under ``root``, its symlinks followed within ``root``
    (the packages' absolute links point into the package tree, not at this machine)."""
    path = root / relative.lstrip("/")
    for _ in range(16):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    raise GuestImageError(f"too many symbolic links at {relative}")


def _elf_deps(data: bytes) -> tuple[str | None, list[str]]:
    """(PT_INTERP path, DT_NEEDED sonames) of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise GuestImageError("not a little-endian 64-bit ELF file")
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    interp = None
    for index in range(phnum):
        kind, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", data,
                                                         phoff + index * phentsize)
        if kind == 3:  # PT_INTERP
            interp = data[offset:offset + size].rstrip(b"\0").decode()
    sections = [struct.unpack_from("<IIQQQQII", data, shoff + index * shentsize)
                for index in range(shnum)]
    needed: list[str] = []
    for _, kind, _, _, offset, size, link, _ in sections:
        if kind != 6:  # SHT_DYNAMIC; its sh_link is the string table of its names
            continue
        strtab = sections[link][4]
        for entry in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strtab + value)
                needed.append(data[strtab + value:end].decode())
    return interp, needed


def _elf_closure(root: Path, program: str) -> list[tuple[str, Path]]:
    """``program``, its ELF interpreter and every shared library it needs (transitively),
    as (path in the guest, file in ``root``): libraries under their soname in the first
    multiarch directory, where the interpreter finds them without a cache."""
    found: list[tuple[str, Path]] = []
    pending = [(program, _inside(root, program))]
    seen: set[str] = set()
    while pending:
        name, path = pending.pop()
        if name in seen:
            continue
        if not path.is_file():
            raise GuestImageError(f"{name} is in none of the guest's packages")
        seen.add(name)
        found.append((name, path))
        interp, needed = _elf_deps(path.read_bytes())
        if interp is not None:
            pending.append((interp.lstrip("/"), _inside(root, interp)))
            # libc names the interpreter too; it is found loaded (by soname), never opened.
            seen.add(f"{LIBRARY_DIRS[0]}/{Path(interp).name}")
        for soname in needed:
            where = next((d for d in LIBRARY_DIRS if _inside(root, f"{d}/{soname}").is_file()),
                         LIBRARY_DIRS[0])
            pending.append((f"{LIBRARY_DIRS[0]}/{soname}", _inside(root, f"{where}/{soname}")))
    return found


class _Cpio:
    """A gzip'd newc archive (what the kernel unpacks as initramfs), written in memory."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        self.inode += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buffer.write(header + encoded)
        self.buffer.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self.buffer.write(data)
        self.buffer.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return gzip.compress(self.buffer.getvalue(), compresslevel=6, mtime=0)


def _initramfs(busybox: Path, modules: list[tuple[str, Path]],
               config_drive_modules: list[tuple[str, Path]]) -> bytes:
    archive = _Cpio()
    for directory in ("bin", "dev", "etc", "etc/acpi", "etc/acpi/PWRF", "etc/dropbear", "lib",
                      "lib/modules", "proc", "run", "sys", "tmp", "mnt", "root"):
        archive.directory(directory)
    # The console must exist before devtmpfs is mounted, or init's first output is lost.
    archive.chardev("dev/console", 5, 1)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    archive.file("init", scripts.INIT.encode(), 0o755)
    archive.file("etc/udhcpc.script", scripts.UDHCPC_SCRIPT.encode(), 0o755)
    archive.file(scripts.POWEROFF_PATH, scripts.POWEROFF.encode(), 0o755)
    archive.file("etc/hostname", b"stratus-guest\n")
    for name, text in scripts.SSH_FILES.items():
        archive.file(name, text.encode())
    for name, path in (*modules, *config_drive_modules):
        archive.file(f"lib/modules/{name}.ko", path.read_bytes())
    for listing, loaded in (("etc/modules-order", modules),
                            ("etc/modules-config-drive", config_drive_modules)):
        archive.file(listing, "\n".join(n for n, _ in loaded).encode() + b"\n")
    return archive.finish()


def ensure_image(cache_dir: Path) -> Path:
    """The cached image if any, else a fresh build (for tests and ``--with-test-image``)."""
    try:
        return build(cache_dir)
    except GuestImageError as exc:
        existing = cached_image(cache_dir)
        if existing is None:
            raise
        LOG.warning("cannot build the test guest (%s); using %s", exc, existing.name)
        return existing
