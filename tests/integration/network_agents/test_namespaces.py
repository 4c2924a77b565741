"""Named network namespaces under /run/netns, as the agents make and enter them."""
from __future__ import annotations

import os
import uuid

import pytest

from stratus.network.agents import linux


def test_a_namespace_being_made_is_not_one_yet() -> None:
    """Between its empty file and the mount on it, a namespace another thread or agent is
    making is not found (entering it failed with setns's EINVAL), and it is found once made."""
    name = f"mk-{uuid.uuid4().hex[:8]}"
    path = os.path.join(linux.NETNS_DIR, name)
    os.makedirs(linux.NETNS_DIR, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        assert not linux.namespace_exists(name)
        with pytest.raises(linux.NamespaceNotFound), linux.entered(name):
            pass
    finally:
        os.unlink(path)
    try:
        assert linux.ensure_namespace(name)
        assert linux.namespace_exists(name)
        with linux.ipr_in(name) as ns:
            assert ns.link_lookup(ifname="lo")
    finally:
        linux.delete_namespace(name)
    assert not linux.namespace_exists(name)
