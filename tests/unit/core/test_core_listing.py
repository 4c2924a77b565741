"""``stratus.core.web.listing``: each dialect's parsing of list parameters, its errors (the
texts the services answer) and its page links."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from stratus.core.exceptions import BadRequest, ValidationError
from stratus.core.web.listing import (
    CINDER,
    GLANCE,
    NEUTRON,
    NOVA,
    ListDialect,
    ListRequest,
    ListSpec,
    SortKey,
)

SERVERS = ListSpec("servers", sort_keys=("created_at", "display_name", "host", "uuid"),
                   admin_sort_keys=("host",))
NETWORKS = ListSpec("networks")
IMAGES = ListSpec("images", sort_keys=("name", "created_at", "id"), default_limit=25,
                  max_limit=100)
VOLUMES = ListSpec("volumes", sort_keys=("name", "created_at", "size"), max_limit=1000)


def q(text: str) -> QueryParams:
    return QueryParams(text)


PORTS = ListSpec("ports", sort_keys=("id", "name"))

#: (dialect, spec, query, error class, the exact message the service answers).
ERRORS = [
    (NOVA, SERVERS, "sort_dir=asc&sort_dir=desc", BadRequest,
     "There are more sort_dir than sort_key values."),
    (NOVA, SERVERS, "sort_key=uuid&sort_dir=up", BadRequest, "Invalid sort_dir 'up'."),
    (NOVA, SERVERS, "sort_key=colour", BadRequest, "Invalid sort_key 'colour'."),
    (NOVA, SERVERS, "limit=x", BadRequest, "limit must be an integer"),
    (NOVA, SERVERS, "limit=-1", BadRequest, "limit must be >= 0"),
    (NEUTRON, NETWORKS, "sort_key=a&sort_key=b&sort_dir=asc", BadRequest,
     "The number of sort_keys and sort_dirs must be same"),
    (NEUTRON, NETWORKS, "sort_key=a&sort_dir=UP", BadRequest,
     "UP is invalid value for sort_dir, valid value is 'asc' and 'desc'"),
    (NEUTRON, NETWORKS, "limit=x", BadRequest, "Invalid input for limit: 'x' is not an integer."),
    (NEUTRON, NETWORKS, "limit=-2", BadRequest,
     "Invalid input for limit: it must not be negative."),
    (NEUTRON, PORTS, "sort_key=colour", BadRequest, "colour is invalid attribute for sort_keys"),
    (GLANCE, IMAGES, "sort=name&sort_dir=asc", BadRequest,
     "'sort' cannot be combined with 'sort_key' or 'sort_dir'."),
    (GLANCE, IMAGES, "sort_key=a&sort_key=b&sort_key=c&sort_dir=asc&sort_dir=asc", BadRequest,
     "Give one sort_dir, or one per sort_key."),
    (GLANCE, IMAGES, "sort_dir=asc&sort_dir=desc", BadRequest,
     "Give one sort_dir, or one per sort_key."),
    (GLANCE, IMAGES, "sort=colour", BadRequest,
     "Invalid sort key 'colour': must be one of name, created_at, id."),
    (GLANCE, IMAGES, "sort=name:up", BadRequest, "Invalid sort direction 'up': asc or desc."),
    (GLANCE, IMAGES, "limit=x", ValidationError,
     "Invalid value for 'limit': 'x' is not an integer."),
    (GLANCE, IMAGES, "limit=-1", ValidationError, "Invalid value for 'limit': must be at least 0."),
    (CINDER, VOLUMES, "sort=name&sort_key=size", BadRequest,
     "Invalid input received: The 'sort' parameter cannot be used with 'sort_key' or "
     "'sort_dir'."),
    (CINDER, VOLUMES, "sort=colour", BadRequest,
     "Invalid input received: Invalid sort key 'colour'."),
    (CINDER, VOLUMES, "sort_key=size&sort_dir=up", BadRequest,
     "Invalid input received: Invalid sort direction 'up'."),
    # Cinder reads the limit before the sort: its error is the one answered.
    (CINDER, VOLUMES, "limit=x&sort=colour", BadRequest,
     "Invalid input received: limit must be an integer."),
    (CINDER, VOLUMES, "offset=-1", BadRequest, "Invalid input received: offset must be >= 0."),
]


@pytest.mark.parametrize(("dialect", "spec", "query", "error", "message"), ERRORS)
def test_errors(dialect: ListDialect, spec: ListSpec, query: str, error: type[Exception],
                message: str) -> None:
    with pytest.raises(error) as caught:
        dialect.parse(QueryParams(query), spec)
    assert str(caught.value) == message
    assert caught.value.status == 400  # type: ignore[attr-defined]


@pytest.mark.parametrize(("dialect", "message"), [
    (NOVA, "marker [m1] not found"), (NEUTRON, "Marker m1 could not be found."),
    (GLANCE, "Invalid marker. Image m1 could not be found."),
    (CINDER, "Marker m1 could not be found."),
])
def test_marker_not_found(dialect: ListDialect, message: str) -> None:
    assert str(dialect.marker_not_found("m1")) == message


# Nova ---------------------------------------------------------------------------------------


def test_nova_defaults() -> None:
    req = NOVA.parse(q(""), SERVERS)
    assert req == ListRequest(sort=(SortKey("created_at", "desc"),))


def test_nova_sort_pairs_and_admin_keys() -> None:
    query = q("sort_key=display_name&sort_key=host&sort_key=uuid&sort_dir=asc&name=web")
    assert NOVA.parse(query, SERVERS).sort == (SortKey("display_name", "asc"),
                                               SortKey("uuid", "asc"))
    assert NOVA.parse(query, SERVERS, admin=True).sort == (
        SortKey("display_name", "asc"), SortKey("host", "asc"), SortKey("uuid", "asc"))
    assert NOVA.parse(query, SERVERS).filters == {"name": ["web"]}


def test_nova_links() -> None:
    req = NOVA.parse(q("limit=2&name=a%20b&marker=old"), SERVERS)
    assert req.limit == 2 and req.marker == "old"
    url = "http://h/compute/v2.1/servers"
    assert NOVA.links(req, SERVERS, url, next_marker=None) == {}
    assert NOVA.links(req, SERVERS, url, next_marker="m2") == {"servers_links": [
        {"rel": "next", "href": f"{url}?limit=2&name=a b&marker=m2"}]}


# Neutron ------------------------------------------------------------------------------------


def test_neutron_parse() -> None:
    req = NEUTRON.parse(q("fields=id&fields=&fields=name&sort_key=name&sort_dir=DESC"
                          "&name=a&name=b&limit=0&verbose=1&page_reverse=True"), NETWORKS)
    assert req.fields == ("id", "name")
    assert req.sort == (SortKey("name", "desc"),)
    assert req.filters == {"name": ["a", "b"]}
    assert req.limit is None
    assert req.page_reverse is True
    assert NEUTRON.parse(q("sort_key=name&sort_key=id"), NETWORKS).sort == (
        SortKey("name", "asc"), SortKey("id", "asc"))
    assert NEUTRON.parse(q("marker="), NETWORKS).marker is None


def test_neutron_raises_its_own_class() -> None:
    class InvalidInput(BadRequest):
        pass

    with pytest.raises(InvalidInput):
        NEUTRON.raising(InvalidInput).parse(q("limit=x"), NETWORKS)
    with pytest.raises(InvalidInput):
        NEUTRON.raising(InvalidInput).parse(q("sort_key=a&sort_dir=no"), NETWORKS)
    assert NEUTRON.error is BadRequest


def test_neutron_links() -> None:
    url = "http://h/networking/v2.0/networks"
    unpaged = NEUTRON.parse(q("name=a"), NETWORKS)
    assert NEUTRON.links(unpaged, NETWORKS, url, next_marker="x") == {}
    req = NEUTRON.parse(q("name=a&fields=id&sort_key=name&sort_dir=asc&limit=2&marker=m0"),
                        NETWORKS)
    body = NEUTRON.links(req, NETWORKS, url, next_marker="m2", previous_marker="m1")
    assert body == {"networks_links": [
        {"rel": "next", "href": f"{url}?name=a&fields=id&sort_key=name&sort_dir=asc"
                                "&limit=2&marker=m2"},
        {"rel": "previous", "href": f"{url}?name=a&fields=id&sort_key=name&sort_dir=asc"
                                    "&limit=2&marker=m1&page_reverse=True"}]}
    first = NEUTRON.parse(q("limit=2"), NETWORKS)
    assert NEUTRON.links(first, NETWORKS, url, next_marker=None, previous_marker="m1") == {}


# Glance -------------------------------------------------------------------------------------


def test_glance_limits_and_sort() -> None:
    assert GLANCE.parse(q(""), IMAGES) == ListRequest(
        limit=25, sort=(SortKey("created_at", "desc"),))
    assert GLANCE.parse(q("limit=1000"), IMAGES).limit == 100
    assert GLANCE.parse(q("sort=name:asc,id"), IMAGES).sort == (
        SortKey("name", "asc"), SortKey("id", "desc"))
    assert GLANCE.parse(q("sort_key=name&sort_key=id&sort_dir=asc"), IMAGES).sort == (
        SortKey("name", "asc"), SortKey("id", "asc"))
    assert GLANCE.parse(q("sort_key=name&sort_key=id"), IMAGES).sort == (
        SortKey("name", "desc"), SortKey("id", "desc"))
    assert GLANCE.parse(q("sort_dir=asc"), IMAGES).sort == (SortKey("created_at", "asc"),)
    assert GLANCE.parse(q("visibility=public&sort=name"), IMAGES).filters == {
        "visibility": ["public"]}


def test_glance_links() -> None:
    req = GLANCE.parse(q("limit=1&marker=i0&name=a b"), IMAGES)
    assert GLANCE.links(req, IMAGES, "/v2/images", next_marker=None) == {
        "first": "/v2/images?limit=1&name=a+b"}
    assert GLANCE.links(req, IMAGES, "/v2/images", next_marker="i1") == {
        "first": "/v2/images?limit=1&name=a+b",
        "next": "/v2/images?limit=1&name=a+b&marker=i1"}
    assert GLANCE.links(GLANCE.parse(q(""), IMAGES), IMAGES, "/v2/images",
                        next_marker=None) == {"first": "/v2/images"}


# Cinder -------------------------------------------------------------------------------------


def test_cinder_parse() -> None:
    req = CINDER.parse(q("status=available&offset=2"), VOLUMES)
    assert req.limit == 1000 and req.offset == 2 and req.sort == ()
    assert req.filter("status") == "available"
    assert CINDER.parse(q("limit=5000"), VOLUMES).limit == 1000
    assert CINDER.parse(q("sort=name:asc,size"), VOLUMES).sort == (
        SortKey("name", "asc"), SortKey("size", "desc"))
    assert CINDER.parse(q("sort_dir=asc"), VOLUMES).sort == (SortKey("created_at", "asc"),)
    assert CINDER.parse(q("sort_key=size"), VOLUMES).sort == (SortKey("size", "desc"),)


def test_cinder_links() -> None:
    url = "http://h/volume/v3/p1/volumes/detail"
    req = CINDER.parse(q("all_tenants=1&status=available&marker=v0&limit=5000"), VOLUMES)
    assert CINDER.links(req, VOLUMES, url, next_marker=None) == {}
    assert CINDER.links(req.without("all_tenants"), VOLUMES, url, next_marker="v9") == {
        "volumes_links": [{"href": f"{url}?status=available&limit=1000&marker=v9",
                           "rel": "next"}]}
    assert req.without("all_tenants").filters == {"status": ["available"]}
