"""Each service's recorded head revision matches its Alembic history."""

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from stratus.compute import migrations as compute_migrations
from stratus.compute.migrations import SCRIPT_LOCATION as COMPUTE_SCRIPTS
from stratus.identity import migrations as identity_migrations
from stratus.identity.migrations import SCRIPT_LOCATION as IDENTITY_SCRIPTS
from stratus.network import migrations as network_migrations
from stratus.network.migrations import SCRIPT_LOCATION as NETWORK_SCRIPTS
from stratus.volume import migrations as volume_migrations
from stratus.volume.migrations import SCRIPT_LOCATION as VOLUME_SCRIPTS


@pytest.mark.parametrize(("location", "head"), [
    (IDENTITY_SCRIPTS, identity_migrations.HEAD),
    (COMPUTE_SCRIPTS, compute_migrations.HEAD),
    (NETWORK_SCRIPTS, network_migrations.HEAD),
    (VOLUME_SCRIPTS, volume_migrations.HEAD),
])
def test_head_is_recorded(location: str, head: str) -> None:
    config = Config()
    config.set_main_option("script_location", location)
    assert ScriptDirectory.from_config(config).get_heads() == [head]


def test_services_can_share_one_database() -> None:
    """With one ``database_url`` for every service, no two services may own a table name."""
    from stratus.compute.models import Base as ComputeBase
    from stratus.identity.models import Base as IdentityBase
    from stratus.image.models import Base as ImageBase
    from stratus.network.models import Base as NetworkBase
    from stratus.volume.models import Base as VolumeBase

    owners: dict[str, str] = {}
    for service, base in (("identity", IdentityBase), ("image", ImageBase),
                          ("compute", ComputeBase), ("network", NetworkBase),
                          ("volume", VolumeBase)):
        for table in base.metadata.tables:
            assert table not in owners, f"{service} and {owners[table]} both own {table}"
            owners[table] = service
