"""Microversion parsing and selection."""

import pytest

from stratus.core.web.microversions import APIVersion, VersionRange, requested_header

RANGE = VersionRange("compute", APIVersion(2, 1), APIVersion(2, 96),
                     legacy_header="X-OpenStack-Nova-API-Version")


def test_versions_compare_numerically() -> None:
    assert APIVersion.parse("2.10") > APIVersion.parse("2.9")
    assert APIVersion.parse("2.96").at_least("2.61")
    assert not APIVersion.parse("2.60").at_least("2.61")
    assert str(APIVersion.parse(" 2.47 ")) == "2.47"


@pytest.mark.parametrize("text", ["2", "2.x", "v2.1", "2.01", "", "-2.1"])
def test_malformed_versions(text: str) -> None:
    with pytest.raises(ValueError):
        APIVersion.parse(text)


def test_selection() -> None:
    assert RANGE.select(None) == APIVersion(2, 1)
    assert RANGE.select("latest") == APIVersion(2, 96)
    assert RANGE.select("LATEST") == APIVersion(2, 96)
    assert RANGE.select("2.61") == APIVersion(2, 61)
    for outside in ("2.0", "2.97", "3.0"):
        with pytest.raises(LookupError):
            RANGE.select(outside)


def test_header_precedence() -> None:
    both = {b"openstack-api-version": b"volume 3.5, compute 2.61",
            b"x-openstack-nova-api-version": b"2.10"}
    assert requested_header(both, RANGE) == "2.61"
    assert requested_header({b"x-openstack-nova-api-version": b"2.10"}, RANGE) == "2.10"
    assert requested_header({b"openstack-api-version": b"volume 3.5"}, RANGE) is None
    assert requested_header({}, RANGE) is None
