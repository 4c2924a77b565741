"""Bus URLs: ``memory://[name]`` and ``rabbit://user:pass@host:port[,host2:port2]/vhost``.

``memory://`` is the in-process broker (``memory://NAME`` a separate one, e.g. per test).
``rabbit://`` (alias ``amqp://``) lists one or more RabbitMQ nodes, tried in turn; each may
carry its own ``user:pass@``, a node without one uses the first credentials given (oslo style
``rabbit://u:p@h1:5672,u:p@h2:5672/vhost`` and the short ``rabbit://u:p@h1,h2/vhost`` both
work). The path is the virtual host, percent-decoded; an empty path is ``/``. Query
parameters are transport options (see :class:`stratus.core.bus.transport.TransportOptions`).

Passwords never appear in ``str()``/``repr()`` of these objects; use :meth:`redacted`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

from stratus.core.bus.errors import InvalidTransportURL

SCHEMES = {"memory": "memory", "rabbit": "rabbit", "amqp": "rabbit"}
DEFAULT_AMQP_PORT = 5672


@dataclass(frozen=True)
class BrokerHost:
    host: str
    port: int = DEFAULT_AMQP_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{user}{host}:{self.port}"


@dataclass(frozen=True)
class TransportURL:
    """A parsed bus URL."""

    transport: str
    hosts: tuple[BrokerHost, ...] = ()
    virtual_host: str = "/"
    #: Name of the in-process broker (``memory://NAME``); empty for the default one.
    name: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> TransportURL:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in SCHEMES:
            raise InvalidTransportURL(
                f"bus URL must start with memory://, rabbit:// or amqp://, not {_safe(url)!r}")
        transport = SCHEMES[scheme.lower()]
        rest, _, query = rest.partition("?")
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
        netloc, slash, path = rest.partition("/")
        if transport == "memory":
            if path:
                raise InvalidTransportURL("memory:// URLs have no path")
            return cls(transport="memory", name=unquote(netloc), options=options)
        if not netloc:
            raise InvalidTransportURL("rabbit:// URL names no host")
        hosts: list[BrokerHost] = []
        default_user: str | None = None
        default_password: str | None = None
        for item in netloc.split(","):
            if not item:
                raise InvalidTransportURL("empty host in rabbit:// URL")
            creds, at, hostport = item.rpartition("@")
            user = password = None
            if at:
                user_part, colon, pass_part = creds.partition(":")
                user = unquote(user_part)
                password = unquote(pass_part) if colon else None
                if default_user is None:
                    default_user, default_password = user, password
            host, port = _host_port(hostport)
            hosts.append(BrokerHost(host=host, port=port, username=user, password=password))
        hosts = [h if h.username is not None else
                 BrokerHost(h.host, h.port, default_user, default_password) for h in hosts]
        vhost = unquote(path) if slash and path else "/"
        return cls(transport="rabbit", hosts=tuple(hosts), virtual_host=vhost, options=options)

    def redacted(self) -> str:
        """The URL with passwords replaced by ``***`` (safe for logs)."""
        query = ("?" + "&".join(f"{k}={v}" for k, v in self.options.items())
                 if self.options else "")
        if self.transport == "memory":
            return f"memory://{quote(self.name)}{query}"
        hosts = []
        for h in self.hosts:
            creds = ""
            if h.username is not None:
                creds = quote(h.username, safe="") + (":***" if h.password else "") + "@"
            host = f"[{h.host}]" if ":" in h.host else h.host
            hosts.append(f"{creds}{host}:{h.port}")
        vhost = "" if self.virtual_host == "/" else quote(self.virtual_host, safe="")
        return f"rabbit://{','.join(hosts)}/{vhost}{query}"

    def __str__(self) -> str:
        return self.redacted()


def _host_port(value: str) -> tuple[str, int]:
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket:
            raise InvalidTransportURL(f"unterminated IPv6 address in {value!r}")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise InvalidTransportURL(f"bad host {value!r}")
    else:
        host, _, port_text = value.partition(":")
    if not host:
        raise InvalidTransportURL("empty host name in rabbit:// URL")
    if not port_text:
        return host, DEFAULT_AMQP_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidTransportURL(f"bad port {port_text!r} in rabbit:// URL")
    return host, int(port_text)


def _safe(url: str) -> str:
    """The URL with anything between ``://`` and ``@`` hidden, for error messages."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
