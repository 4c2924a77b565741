"""The dashboard tests' chromium, isolated from the host's network changes (``browser_netns``).

Chromium fails the requests waiting for a connection with ``net::ERR_NETWORK_CHANGED`` when a
link or address of its namespace changes; the tests beside the browser tests change the
host's all the time. Run with chromium in the host's namespace (``executable_path`` the
plain ``/usr/bin/chromium``), the first test here sees those errors; in its own namespace,
none.
"""

from __future__ import annotations

import http.server
import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2 import IPRoute

from stratus.network.agents import linux
from tests.e2e.browser_netns import LoopbackRelay

#: A page that keeps 30 fetches in flight for a few seconds (more than chromium's six
#: connections a host, so some always wait for one) and counts what completed and failed.
_PAGE = b"""<html><body><script>
window.done = false; window.fetched = 0;
(async () => {
  const end = Date.now() + 4000;
  const worker = async () => {
    while (Date.now() < end) {
      try { await fetch('/ping?' + Math.random()); window.fetched++; }
      catch (e) { console.error('fetch failed: ' + e); }
    }
  };
  await Promise.all(Array.from({length: 30}, worker));
  window.done = true;
})();
</script></body></html>"""


class _Pages(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # a connection per request: every fetch connects anew

    def do_GET(self) -> None:
        body = _PAGE if self.path == "/" else b"pong"
        time.sleep(0.01)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def loopback_site() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _churn_host_links(stop: threading.Event) -> int:
    """A veth pair made, addressed and removed in the host's namespace, again and again (as
    the network tests do); how many times."""
    name = f"chrn{os.getpid() % 100000}"
    made = 0
    with IPRoute() as ipr:
        while not stop.is_set():
            ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")
            for end in (name, f"{name}p"):
                ipr.link("set", index=ipr.link_lookup(ifname=end)[0], state="up")
            ipr.addr("add", index=ipr.link_lookup(ifname=name)[0],
                     address=f"198.18.{made % 250}.1", prefixlen=24)
            made += 1
            stop.wait(0.3)
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
            stop.wait(0.5)
    return made


# First in the module: once the module's chromium runs (``dashboard_browser``), this thread
# has a running event loop, and pyroute2 refuses to start another in it.
def test_the_relay_carries_both_ways_and_half_closes() -> None:
    """A connection to 127.0.0.1:<port> inside the namespace reaches the host's listener on
    that port; the client's end of sending reaches the server, whose answer still comes
    back; a connection to a port nobody listens on is reset."""
    namespace = f"stratus-relaytest-{os.getpid()}"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    heard: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            chunks = []
            while data := conn.recv(4096):
                chunks.append(data)
            heard.append(b"".join(chunks))
            conn.sendall(b"answer to " + heard[0])

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    linux.ensure_namespace(namespace)
    relay = LoopbackRelay(namespace)
    try:
        with linux.entered(namespace):
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            refused = socket.socket()
        with client:
            client.sendall(b"question" * 10_000)
            client.shutdown(socket.SHUT_WR)
            answer = b""
            while data := client.recv(65536):
                answer += data
        server.join(timeout=10)
        assert heard == [b"question" * 10_000]
        assert answer == b"answer to " + b"question" * 10_000
        listener.close()  # now nothing listens there: the relay resets the connection
        with refused:
            refused.settimeout(10)
            with pytest.raises(ConnectionResetError):  # at the connect or at the first read
                refused.connect(("127.0.0.1", port))
                refused.recv(1)
    finally:
        relay.close()
        linux.delete_namespace(namespace)
    assert not [t for t in threading.enumerate() if t.name == "browser-relay"]


def test_the_browser_keeps_loading_while_the_host_links_change(
        dashboard_browser: Any, loopback_site: int) -> None:
    page = dashboard_browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    stop = threading.Event()
    churned: list[int] = []
    churn = threading.Thread(target=lambda: churned.append(_churn_host_links(stop)))
    try:
        page.goto(f"http://127.0.0.1:{loopback_site}/")
        churn.start()
        page.wait_for_function("window.done", timeout=30_000)
        fetched = page.evaluate("window.fetched")
    finally:
        stop.set()
        if churn.is_alive():
            churn.join()
        page.close()
    assert churned and churned[0] >= 3, "the host's links did not change during the loads"
    assert fetched > 100
    assert errors == []
