"""Bus targets, queue names and bus URLs (pure logic)."""

from __future__ import annotations

import pytest

from stratus.core.bus import (
    InvalidTarget,
    InvalidTransportURL,
    RPCServer,
    Target,
    TransportOptions,
)
from stratus.core.bus.target import (
    call_queue,
    cast_queue,
    dead_letter_queue,
    fanout_exchange,
    version_compatible,
)
from stratus.core.bus.transport import QueueSpec, get_transport
from stratus.core.bus.url import BrokerHost, TransportURL


def test_target_names_and_validation() -> None:
    assert str(Target("scheduler")) == "scheduler"
    assert str(Target("compute", server="node-1.example.org")) == "compute.node-1.example.org"
    assert str(Target("dhcp", fanout=True)) == "dhcp(fanout)"
    assert Target("compute").replace(server="h1") == Target("compute", server="h1")
    for bad in ("", "with.dot", "sp ace", "x" * 65):
        with pytest.raises(InvalidTarget):
            Target(bad)
    with pytest.raises(InvalidTarget):
        Target("compute", server="a b")
    with pytest.raises(InvalidTarget):
        Target("compute", server="h1", fanout=True)
    with pytest.raises(InvalidTarget):
        Target("compute", version="1")

    # A server of one host's queues only (``host_only``) needs that host.
    with pytest.raises(InvalidTarget, match="needs the target's server"):
        RPCServer(get_transport("memory://names"), Target("compute-events"), object(), (),
                  host_only=True)


def test_queue_names() -> None:
    assert cast_queue("scheduler") == "stratus.cast.scheduler"
    assert cast_queue("compute", "h1") == "stratus.cast.compute.h1"
    assert call_queue("conductor") == "stratus.call.conductor"
    assert dead_letter_queue("compute") == "stratus.dead.compute"
    assert fanout_exchange("dhcp") == "stratus.fanout.dhcp"
    spec = QueueSpec.cast("compute", "h1")
    assert (spec.kind, spec.dead_letter) == ("cast", "stratus.dead.compute")
    assert QueueSpec.call("compute").dead_letter is None


def test_version_compatibility() -> None:
    assert version_compatible("1.2", "1.0")
    assert version_compatible("1.2", "1.2")
    assert not version_compatible("1.2", "1.3")
    assert not version_compatible("2.0", "1.0")


def test_memory_urls() -> None:
    assert TransportURL.parse("memory://") == TransportURL("memory")
    url = TransportURL.parse("memory://tests?max_attempts=2")
    assert (url.name, url.options) == ("tests", {"max_attempts": "2"})


def test_rabbit_url_one_host() -> None:
    url = TransportURL.parse("rabbit://guest:s%40cret@127.0.0.1:5672/stratus")
    assert url.transport == "rabbit" and url.virtual_host == "stratus"
    assert url.hosts == (BrokerHost("127.0.0.1", 5672, "guest", "s@cret"),)
    assert "s@cret" not in str(url) and "s%40cret" not in repr(url)
    assert str(url) == "rabbit://guest:***@127.0.0.1:5672/stratus"
    assert TransportURL.parse("amqp://h").virtual_host == "/"
    assert TransportURL.parse("rabbit://h/").hosts[0].port == 5672
    assert TransportURL.parse("rabbit://h/%2Fprod").virtual_host == "/prod"


def test_rabbit_url_several_hosts() -> None:
    url = TransportURL.parse("rabbit://u:p@h1:5672,h2:5673,other:pw@[::1]/v")
    assert [(h.host, h.port, h.username, h.password) for h in url.hosts] == [
        ("h1", 5672, "u", "p"), ("h2", 5673, "u", "p"), ("::1", 5672, "other", "pw")]
    assert "pw" not in str(url) and ":p@" not in str(url)


@pytest.mark.parametrize("bad", [
    "redis://h", "h1:5672", "rabbit://", "rabbit://u:p@/v", "rabbit://h1,,h2/",
    "rabbit://h:99999/", "rabbit://h:port/", "memory://x/y",
])
def test_bad_urls(bad: str) -> None:
    with pytest.raises(InvalidTransportURL):
        TransportURL.parse(bad)


def test_bad_url_errors_do_not_echo_passwords() -> None:
    with pytest.raises(InvalidTransportURL) as caught:
        TransportURL.parse("redis://user:hunter2@h")
    assert "hunter2" not in str(caught.value)


def test_options_from_url_and_keywords() -> None:
    transport = get_transport("memory://o?max_attempts=7", send_timeout=2)
    assert transport.options == TransportOptions(max_attempts=7, send_timeout=2)
    with pytest.raises(InvalidTransportURL, match="no_such_option"):
        get_transport("memory://?no_such_option=1")
    with pytest.raises(InvalidTransportURL, match="max_attempts"):
        get_transport("memory://?max_attempts=0")
