"""Imported once by the ``openstack`` CLI's fork server (``tests.e2e.openstack_cli``): the
CLI's shell, openstacksdk, keystoneauth and every command module the installed clients
register, so that a command forked from the server finds them imported.

Only the fork server imports this module; importing it elsewhere costs ~0.8 s and ~90 MB.
"""

import contextlib
import sys
from importlib import metadata

from tests.e2e.openstack_cli import CONSOLE_SCRIPT

# cliff takes the program's name (in usage lines and errors) from sys.argv[0] when it is
# imported; the fork server's own is "-c".
sys.argv = [str(CONSOLE_SCRIPT)]

import cliff.command  # noqa: E402
import keystoneauth1.identity.generic  # noqa: E402
import keystoneauth1.loading  # noqa: E402, F401
import openstack.connection  # noqa: E402, F401
import openstackclient.shell  # noqa: E402, F401

# The clients register their commands as entry points in groups named ``openstack.*``
# (``openstack.compute.v2``, ``openstack.network.v2``, ...); the CLI imports a command's
# module only when the command runs.
for _group in metadata.entry_points().groups:
    if _group.startswith("openstack."):
        for _entry in metadata.entry_points(group=_group):
            # A module that cannot be imported fails its command when the command runs,
            # as it does under the console script.
            with contextlib.suppress(Exception):
                _entry.load()

# Every command's help epilog names the distribution that installed it, from a map of all
# installed modules that cliff builds on first use and keeps (~0.1 s): built here once.
with contextlib.suppress(Exception):
    cliff.command._get_distributions_by_modules()
