"""Volume transfers (``os-volume-transfer``, ``volume-transfers``): a volume offered by one
project and taken by another with the auth key, its snapshots and quota usage with it."""

from __future__ import annotations

from tests.integration.volume.conftest import VolCloud, assert_cinder_error


async def test_a_volume_moves_to_the_project_that_has_the_key(cloud: VolCloud) -> None:
    donor, taker = await cloud.project(), await cloud.project()
    volume = await cloud.create_volume(donor, size=1, name="gift")
    await cloud.wait_volume(volume["id"], "available", who=donor)
    snapshot = (await cloud.call("POST", "/snapshots", donor, json={"snapshot": {
        "volume_id": volume["id"]}})).json()["snapshot"]
    await cloud.wait_snapshot(snapshot["id"], "available")

    created = await cloud.call("POST", "/os-volume-transfer", donor, json={"transfer": {
        "volume_id": volume["id"], "name": "for-taker"}})
    assert created.status_code == 202, created.text
    transfer = created.json()["transfer"]
    assert set(transfer) == {"id", "name", "volume_id", "created_at", "links", "auth_key"}
    assert len(transfer["auth_key"]) == 16
    assert (await cloud.call("GET", f"/volumes/{volume['id']}", donor)).json()["volume"][
        "status"] == "awaiting-transfer"
    # Listed and shown to its owner, without the key; not to others.
    listed = (await cloud.call("GET", "/os-volume-transfer", donor)).json()["transfers"]
    assert listed == [{"id": transfer["id"], "name": "for-taker", "volume_id": volume["id"],
                       "links": transfer["links"]}]
    detail = (await cloud.call("GET", "/os-volume-transfer/detail", donor)).json()
    assert detail["transfers"][0]["created_at"] == transfer["created_at"]
    shown = (await cloud.call("GET", f"/os-volume-transfer/{transfer['id']}", donor)).json()
    assert "auth_key" not in shown["transfer"]
    assert (await cloud.call("GET", "/os-volume-transfer", taker)).json()["transfers"] == []
    assert_cinder_error(await cloud.call("GET", f"/os-volume-transfer/{transfer['id']}",
                                         taker), 404, "itemNotFound")
    # An offered volume is not deleted.
    assert_cinder_error(await cloud.call("DELETE", f"/volumes/{volume['id']}", donor), 400,
                        "badRequest")

    wrong = await cloud.call("POST", f"/os-volume-transfer/{transfer['id']}/accept", taker,
                             json={"accept": {"auth_key": "0" * 16}})
    assert "auth key" in assert_cinder_error(wrong, 400, "badRequest")
    accepted = await cloud.call("POST", f"/os-volume-transfer/{transfer['id']}/accept",
                                taker, json={"accept": {"auth_key": transfer["auth_key"]}})
    assert accepted.status_code == 202, accepted.text
    assert set(accepted.json()["transfer"]) == {"id", "name", "volume_id", "links"}

    moved = (await cloud.call("GET", f"/volumes/{volume['id']}", taker)).json()["volume"]
    assert moved["status"] == "available"
    assert moved["os-vol-tenant-attr:tenant_id"] == taker.project_id
    assert (await cloud.call("GET", f"/snapshots/{snapshot['id']}", taker)).status_code == 200
    assert_cinder_error(await cloud.call("GET", f"/volumes/{volume['id']}", donor), 404,
                        "itemNotFound")
    usage = (await cloud.call("GET", f"/os-quota-sets/{taker.project_id}?usage=true",
                              taker)).json()["quota_set"]
    assert (usage["volumes"]["in_use"], usage["snapshots"]["in_use"],
            usage["gigabytes"]["in_use"]) == (1, 1, 2)
    again = await cloud.call("POST", f"/os-volume-transfer/{transfer['id']}/accept", taker,
                             json={"accept": {"auth_key": transfer["auth_key"]}})
    assert_cinder_error(again, 404, "itemNotFound")


async def test_withdrawn_offers_and_the_versioned_api(cloud: VolCloud) -> None:
    donor = await cloud.project()
    volume = await cloud.create_volume(donor, size=1)
    await cloud.wait_volume(volume["id"], "available", who=donor)
    old = await cloud.call("POST", "/volume-transfers", donor, version="3.54",
                           json={"transfer": {"volume_id": volume["id"]}})
    assert_cinder_error(old, 404, "itemNotFound")
    created = await cloud.call("POST", "/volume-transfers", donor, version="3.57",
                               json={"transfer": {"volume_id": volume["id"],
                                                  "no_snapshots": True}})
    assert created.status_code == 202, created.text
    transfer = created.json()["transfer"]
    assert (transfer["no_snapshots"], transfer["accepted"], transfer["source_project_id"],
            transfer["destination_project_id"]) == (True, False, donor.project_id, None)
    # The volume is offered once at a time.
    twice = await cloud.call("POST", "/os-volume-transfer", donor, json={"transfer": {
        "volume_id": volume["id"]}})
    assert_cinder_error(twice, 400, "badRequest")

    withdrawn = await cloud.call("DELETE", f"/volume-transfers/{transfer['id']}", donor,
                                 version="3.57")
    assert withdrawn.status_code == 202, withdrawn.text
    assert (await cloud.call("GET", f"/volumes/{volume['id']}", donor)).json()["volume"][
        "status"] == "available"
    assert (await cloud.call("GET", "/volume-transfers", donor,
                             version="3.57")).json()["transfers"] == []
    # A force delete of an offered volume closes the offer.
    offered = (await cloud.call("POST", "/os-volume-transfer", donor, json={"transfer": {
        "volume_id": volume["id"]}})).json()["transfer"]
    forced = await cloud.call("POST", f"/volumes/{volume['id']}/action",
                              json={"os-force_delete": {}})
    assert forced.status_code == 202, forced.text
    assert (await cloud.call("GET", "/os-volume-transfer", donor)).json()["transfers"] == []
    assert_cinder_error(await cloud.call(
        "POST", f"/os-volume-transfer/{offered['id']}/accept", donor,
        json={"accept": {"auth_key": offered["auth_key"]}}), 404, "itemNotFound")
    missing = await cloud.call("POST", "/os-volume-transfer", donor, json={"transfer": {
        "volume_id": "00000000-0000-0000-0000-000000000000"}})
    assert_cinder_error(missing, 404, "itemNotFound")
