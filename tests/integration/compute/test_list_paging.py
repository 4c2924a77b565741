"""Compute's paged lists page in SQL: page 2 of 1,000 rows loads about one page of rows.

The rows are written straight to the database (the tests are about paging, not creation);
``count_loaded`` counts the rows of the model the database returned while page 2 is served.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from stratus.compute.keypairs import fingerprint
from stratus.compute.models import Flavor, KeyPair, ResourceProvider
from stratus.core.db import Database
from tests.dbcount import count_loaded
from tests.integration.compute.conftest import ComputeCloud
from tests.integration.compute.test_keypairs import public_key

ROWS = 1000
LIMIT = 50


async def _runtime_db(cloud: ComputeCloud) -> Database:
    assert cloud.stack is not None and cloud.stack.compute is not None
    return cloud.stack.compute.db


def _next(body: dict[str, object], key: str) -> str:
    links = body[key]
    assert isinstance(links, list) and links[0]["rel"] == "next"
    parts = urlsplit(links[0]["href"])
    return f"{parts.path.removeprefix('/compute/v2.1')}?{parts.query}"


async def test_flavors_page_two_of_a_thousand(cloud: ComputeCloud) -> None:
    db = await _runtime_db(cloud)
    async with db.session() as session:
        session.add_all(Flavor(id=f"p{i:04d}", name=f"paged-{i:04d}", vcpus=1, ram=64, disk=1,
                               extra_specs={}) for i in range(ROWS))
    first = (await cloud.compute("GET", f"/flavors?limit={LIMIT}")).json()
    # The five seeded flavors ("1".."5") sort before "p0000".
    assert [f["id"] for f in first["flavors"]][-1] == f"p{LIMIT - 6:04d}"
    with count_loaded(Flavor) as loaded:
        second = await cloud.compute("GET", _next(first, "flavors_links"))
    assert second.status_code == 200, second.text
    assert [f["id"] for f in second.json()["flavors"]] == [
        f"p{i:04d}" for i in range(LIMIT - 5, 2 * LIMIT - 5)]
    assert loaded.count <= LIMIT + 2, loaded.count


async def test_keypairs_page_two_of_a_thousand(cloud: ComputeCloud) -> None:
    db = await _runtime_db(cloud)
    key = public_key()
    async with db.session() as session:
        session.add_all(KeyPair(user_id="pager", name=f"key-{i:04d}", type="ssh",
                                public_key=key, fingerprint=fingerprint(key))
                        for i in range(ROWS))
    first = (await cloud.compute("GET", f"/os-keypairs?user_id=pager&limit={LIMIT}",
                                 version="2.35")).json()
    assert [k["keypair"]["name"] for k in first["keypairs"]][-1] == f"key-{LIMIT - 1:04d}"
    with count_loaded(KeyPair) as loaded:
        second = await cloud.compute("GET", _next(first, "keypairs_links"), version="2.35")
    assert second.status_code == 200, second.text
    assert [k["keypair"]["name"] for k in second.json()["keypairs"]] == [
        f"key-{i:04d}" for i in range(LIMIT, 2 * LIMIT)]
    assert loaded.count <= LIMIT + 2, loaded.count


async def test_hypervisors_page_two_of_a_thousand(cloud: ComputeCloud) -> None:
    db = await _runtime_db(cloud)
    async with db.session() as session:
        session.add_all(ResourceProvider(uuid=f"00000000-0000-0000-0000-{i:012d}",
                                         name=f"host-{i:04d}", aggregate_metadata={})
                        for i in range(ROWS))
    for version, marker_of in (("2.53", lambda i: f"00000000-0000-0000-0000-{i:012d}"),
                               ("2.33", lambda i: str(i + 1))):
        first = (await cloud.compute("GET", f"/os-hypervisors?limit={LIMIT}",
                                     version=version)).json()
        assert first["hypervisors"][-1]["id"] == (
            marker_of(LIMIT - 1) if version == "2.53" else LIMIT)
        with count_loaded(ResourceProvider) as loaded:
            second = await cloud.compute("GET", _next(first, "hypervisors_links"),
                                         version=version)
        assert second.status_code == 200, second.text
        assert [h["hypervisor_hostname"] for h in second.json()["hypervisors"]] == [
            f"host-{i:04d}" for i in range(LIMIT, 2 * LIMIT)]
        assert loaded.count <= LIMIT + 2, loaded.count
        assert marker_of(LIMIT - 1) in first["hypervisors_links"][0]["href"]
