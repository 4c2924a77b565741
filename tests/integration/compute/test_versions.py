"""Compute's version discovery and microversion negotiation."""

from __future__ import annotations

from tests.integration.compute.conftest import ROOT, ComputeCloud, assert_compute_error


async def test_discovery_documents_are_served_without_a_token(cloud: ComputeCloud) -> None:
    listing = await cloud.client.get("/compute/")
    assert listing.status_code == 200
    v20, v21 = listing.json()["versions"]  # v2.0 first, as Nova lists them
    assert (v20["id"], v20["status"], v20["version"]) == ("v2.0", "SUPPORTED", "")
    assert v20["links"] == [{"rel": "self", "href": f"{ROOT}/compute/v2/"}]
    for path in ("/compute/v2", "/compute/v2/"):
        version = (await cloud.client.get(path)).json()["version"]
        assert version["id"] == "v2.0" and version["links"] == v20["links"]
    assert v21["id"] == "v2.1" and v21["status"] == "CURRENT"
    assert (v21["min_version"], v21["version"]) == ("2.1", "2.96")
    assert v21["links"] == [{"rel": "self", "href": f"{ROOT}/compute/v2.1/"}]
    for path in ("/compute/v2.1", "/compute/v2.1/"):
        version = (await cloud.client.get(path)).json()["version"]
        assert version["version"] == "2.96"
        assert version["links"] == [{"rel": "self", "href": f"{ROOT}/compute/v2.1/"}]


async def test_microversion_negotiation(cloud: ComputeCloud) -> None:
    plain = await cloud.compute("GET", "/flavors")
    assert plain.headers["OpenStack-API-Version"] == "compute 2.1"
    assert plain.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    assert "OpenStack-API-Version" in plain.headers["Vary"]
    assert plain.headers["x-compute-request-id"] == plain.headers["x-openstack-request-id"]

    latest = await cloud.compute("GET", "/flavors", version="latest")
    assert latest.headers["X-OpenStack-Nova-API-Version"] == "2.96"

    legacy = await cloud.client.get("/compute/v2.1/flavors", headers={
        "X-Auth-Token": cloud.admin_token, "X-OpenStack-Nova-API-Version": "2.55"})
    assert legacy.headers["OpenStack-API-Version"] == "compute 2.55"
    # The standard header wins when both are sent (as the SDK sends both).
    both = await cloud.client.get("/compute/v2.1/flavors", headers={
        "X-Auth-Token": cloud.admin_token, "X-OpenStack-Nova-API-Version": "2.55",
        "OpenStack-API-Version": "compute 2.61"})
    assert both.headers["X-OpenStack-Nova-API-Version"] == "2.61"

    too_new = await cloud.compute("GET", "/flavors", version="2.97")
    assert "not supported" in assert_compute_error(too_new, 406, "notAcceptable")
    too_old = await cloud.compute("GET", "/flavors", version="2.0")
    assert_compute_error(too_old, 406, "notAcceptable")
    garbage = await cloud.compute("GET", "/flavors", version="two")
    assert_compute_error(garbage, 400, "badRequest")
    # Another service's version in the standard header is not ours to honour.
    other = await cloud.client.get("/compute/v2.1/flavors", headers={
        "X-Auth-Token": cloud.admin_token, "OpenStack-API-Version": "volume 3.71"})
    assert other.headers["OpenStack-API-Version"] == "compute 2.1"


async def test_v2_is_the_api_at_its_base_microversion(cloud: ComputeCloud) -> None:
    """Under /v2 the same resources answer, at 2.1 whatever microversion is asked for."""
    for headers in ({}, {"OpenStack-API-Version": "compute 2.61",
                         "X-OpenStack-Nova-API-Version": "2.61"}):
        legacy = await cloud.client.get("/compute/v2/flavors/detail", headers={
            "X-Auth-Token": cloud.admin_token, **headers})
        assert legacy.status_code == 200, legacy.text
        assert legacy.headers["OpenStack-API-Version"] == "compute 2.1"
        current = await cloud.compute("GET", "/flavors/detail")
        assert legacy.json() == current.json()
    assert_compute_error(await cloud.client.get("/compute/v2/flavors"), 401, "unauthorized")


async def test_errors_are_novas_shape(cloud: ComputeCloud) -> None:
    assert_compute_error(await cloud.client.get("/compute/v2.1/flavors"), 401, "unauthorized")
    assert_compute_error(await cloud.compute("GET", "/no-such"), 404, "itemNotFound")
    malformed = await cloud.compute("POST", "/flavors", content=b"{nope",
                                    headers={"Content-Type": "application/json"})
    assert_compute_error(malformed, 400, "badRequest")


async def test_a_boot_without_a_token_is_refused_before_its_body_is_checked(
        cloud: ComputeCloud) -> None:
    """401 for a body of any shape: nothing about the schema is told to a caller without a
    token (``create_server`` keeps the caller a dependency for it, solved before the
    body's validation; a body that is not JSON at all FastAPI refuses first, 400)."""
    for body in ({"server": {}}, {"bogus": 1}, []):
        refused = await cloud.client.post("/compute/v2.1/servers", json=body)
        assert_compute_error(refused, 401, "unauthorized")


async def test_the_version_is_checked_before_the_body(cloud: ComputeCloud) -> None:
    """As Nova (whose ``Resource`` checks the version before it reads the body): a request
    asking for a version out of range is a 406 naming the range, a malformed version a
    400 naming the version, whatever its body; so for the boot (``create_server`` reads the
    negotiated version in its handler, after FastAPI checked the body: the negotiation is
    ``MicroversionMiddleware``'s, before the route is found) and the other writes."""
    writes = [("POST", "/servers"), ("PUT", "/servers/no-such"),
              ("POST", "/servers/no-such/action"), ("POST", "/flavors"),
              ("POST", "/os-keypairs"), ("POST", "/os-server-groups")]
    bodies: list[tuple[dict[str, object], dict[str, str]]] = [
        ({"json": {"bogus": 1}}, {}), ({"json": []}, {}),
        ({"content": b"{nope"}, {"Content-Type": "application/json"})]
    for method, path in writes:
        for body, headers in bodies:
            for asked, named in (("compute 2.97", "2.97"), (None, "2.0")):
                version = {"OpenStack-API-Version": asked} if asked else {
                    "X-OpenStack-Nova-API-Version": named}
                refused = await cloud.compute(method, path, headers={**headers, **version},
                                              **body)
                message = assert_compute_error(refused, 406, "notAcceptable")
                assert message == (f"Version {named} is not supported by the API. "
                                   "Minimum is 2.1 and maximum is 2.96."), (method, path)
            malformed = await cloud.compute(method, path, version="two", headers=headers,
                                            **body)
            assert "'two'" in assert_compute_error(malformed, 400, "badRequest")
