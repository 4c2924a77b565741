"""Chromium in a network namespace of its own, reaching the host's loopback through a relay.

Why: chromium watches the host's links and addresses over netlink and fails every request in
flight with ``net::ERR_NETWORK_CHANGED`` when one of them changes, and the tests running
beside the browser tests add and remove bridges, veths and addresses all the time. In a
namespace of its own chromium sees only that namespace's loopback, which never changes.

Inside the namespace an nftables rule redirects every TCP connection to 127.0.0.1 to one
relay listener; the relay reads the port the connection was made to (``SO_ORIGINAL_DST``)
and connects to the same port on the host's loopback, so the pages use the cloud's own URL
(and its cookies and origin) unchanged, whatever ports the tests' clouds listen on.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stratus.network.agents import linux
from stratus.network.agents.l3.router import run_in

_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h: the address a NATed connection was made to


class LoopbackRelay:
    """Connections to 127.0.0.1 inside ``namespace`` carried to the same port of the host's
    127.0.0.1; ``close`` ends every connection and the listener."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        with linux.ipr_in(namespace) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        with linux.entered(namespace):
            self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        run_in(namespace, ["nft", "-f", "-"], _redirect_to(port))
        self._accepting = threading.Thread(target=self._accept, name="browser-relay",
                                           daemon=True)
        self._accepting.start()

    def close(self) -> None:
        # A shutdown wakes the thread blocked in accept(); a close alone would not on Linux.
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(timeout=10)
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while True:
            try:
                inside, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._carry, args=(inside,), daemon=True).start()

    def _carry(self, inside: socket.socket) -> None:
        original = inside.getsockopt(socket.SOL_IP, _SO_ORIGINAL_DST, 16)
        port = struct.unpack_from("!H", original, 2)[0]
        try:
            outside = socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:  # nothing listens there: reset, as near as can be to a refusal
            inside.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            inside.close()
            return
        outside.settimeout(None)
        with self._lock:
            self._open.update((inside, outside))
        back = threading.Thread(target=_pump, args=(outside, inside), daemon=True)
        back.start()
        _pump(inside, outside)
        back.join()
        with self._lock:
            self._open.difference_update((inside, outside))
        inside.close()
        outside.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends, then end ``sink``'s sending side
    (a half-close, so the other direction may still finish)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:  # reset, or closed by ``close``
        pass


def _redirect_to(port: int) -> str:
    return (f"table ip browser_relay {{\n"
            f"  chain output {{\n"
            f"    type nat hook output priority -100; policy accept;\n"
            f"    ip daddr 127.0.0.1 tcp dport != {port} redirect to :{port}\n"
            f"  }}\n"
            f"}}\n")


@contextmanager
def isolated_chromium(chromium: Path, workdir: Path) -> Iterator[Path]:
    """An executable that starts ``chromium`` in a fresh network namespace whose loopback
    reaches the host's (give it to Playwright as ``executable_path``); the namespace and
    the relay are gone when the block ends."""
    namespace = f"stratus-browser-{os.getpid()}"
    linux.ensure_namespace(namespace)
    relay = None
    try:
        relay = LoopbackRelay(namespace)
        wrapper = workdir / "chromium-in-netns"
        wrapper.write_text("#!/bin/sh\n"
                           f'exec nsenter --net={linux.NETNS_DIR}/{namespace} -- {chromium} "$@"\n')
        wrapper.chmod(0o755)
        yield wrapper
    finally:
        if relay is not None:
            relay.close()
        linux.delete_namespace(namespace)
