"""A unique constraint the database catches while a collection's route works (two requests
that raced past the service's own duplicate check) is the client's 409 in Neutron's error
format, never a 500; the transaction is rolled back and the next write goes through.

The database is made to refuse by a trigger that raises a unique violation for ports
named ``clash`` (on insert, and on update to that name): the constraint error a race
would raise, on demand."""

from __future__ import annotations

from stratus.core.db import Database
from tests.integration.network.conftest import NetCloud

SQLITE_TRIGGERS = [
    f"CREATE TRIGGER clash_{when} BEFORE {when} ON network_ports WHEN NEW.name = 'clash' "
    "BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: network_ports.name'); END"
    for when in ("INSERT", "UPDATE")]
POSTGRESQL_TRIGGERS = [
    "CREATE FUNCTION clash() RETURNS trigger AS $$ BEGIN IF NEW.name = 'clash' THEN "
    "RAISE EXCEPTION 'duplicate name' USING ERRCODE = 'unique_violation'; END IF; "
    "RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER clash BEFORE INSERT OR UPDATE ON network_ports FOR EACH ROW "
    "EXECUTE FUNCTION clash()"]


async def _refuse_ports_named_clash(db: Database) -> None:
    statements = SQLITE_TRIGGERS if db.backend == "sqlite" else POSTGRESQL_TRIGGERS
    async with db.engine.begin() as connection:
        for statement in statements:
            await connection.exec_driver_sql(statement)


async def test_a_unique_violation_in_a_create_or_update_is_a_409(cloud: NetCloud) -> None:
    net, _ = await cloud.network_with_subnet()
    port = await cloud.create("port", network_id=net["id"], name="fine")
    await _refuse_ports_named_clash(cloud.runtime.db)

    created = await cloud.call("POST", "/ports",
                               json={"port": {"network_id": net["id"], "name": "clash"}})
    assert created.status_code == 409, created.text
    assert created.json()["NeutronError"]["message"] == (
        "The request conflicts with a concurrent change.")
    updated = await cloud.call("PUT", f"/ports/{port['id']}", json={"port": {"name": "clash"}})
    assert updated.status_code == 409, updated.text

    # Rolled back, and the writers' lock let go: nothing of the refused writes is left,
    # and the next create and update go through.
    names = {p["name"] for p in (await cloud.call(
        "GET", f"/ports?network_id={net['id']}")).json()["ports"]}
    assert names == {"fine"}
    await cloud.create("port", network_id=net["id"], name="next")
    renamed = await cloud.call("PUT", f"/ports/{port['id']}", json={"port": {"name": "other"}})
    assert renamed.status_code == 200, renamed.text
