"""Field types for the string formats OpenStack's request schemas name.

A value that does not fit is a validation error, which the APIs answer with a 400 naming the
field. Addresses come back normalised (an IPv6 address in its shortest form), as Nova
stores and shows them.
"""

from __future__ import annotations

import ipaddress
import uuid as uuidlib
from typing import Annotated

from pydantic import AfterValidator


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _ipv6(value: str) -> str:
    """The address in its shortest form, as Nova stores and shows it."""
    try:
        return str(ipaddress.IPv6Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv6 address") from None


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _uuid(value: str) -> str:
    """A UUID in any form Nova takes (hyphens or not, any case), as given."""
    try:
        uuidlib.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    return value


#: Format ``ipv4`` (Nova's ``accessIPv4``).
AccessIPv4 = Annotated[str, AfterValidator(_ipv4)]
#: Format ``ipv6`` (Nova's ``accessIPv6``), shortened.
AccessIPv6 = Annotated[str, AfterValidator(_ipv6)]
#: Either family (Nova's ``fixed_ip``).
IPAddress = Annotated[str, AfterValidator(_ip)]
#: Format ``uuid``: hyphens or not, any case; kept as given.
UUID = Annotated[str, AfterValidator(_uuid)]
