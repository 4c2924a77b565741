"""Each service's recorded head revision matches its Alembic history."""

from alembic.config import Config
from alembic.script import ScriptDirectory

from stratus.identity import migrations as identity_migrations
from stratus.identity.service import SCRIPT_LOCATION


def test_identity_head_is_recorded() -> None:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    heads = ScriptDirectory.from_config(config).get_heads()
    assert heads == [identity_migrations.HEAD]
