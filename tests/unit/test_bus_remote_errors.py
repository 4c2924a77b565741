"""Remote errors on the allow-list come back as their own type (``stratus.core.bus.errors``)."""

from __future__ import annotations

import pytest

from stratus.core.bus import RemoteError, UnknownMethod
from stratus.core.bus.errors import BUS_ERRORS, allow_list, remote_class, remote_error
from stratus.core.exceptions import Conflict, NotFound


class TaskMoved(Conflict):
    def __init__(self, uuid: str) -> None:  # another constructor than StratusError's
        super().__init__(f"{uuid} moved")


def test_an_allowed_type_is_raised_as_itself_and_as_remote_error() -> None:
    exc = remote_error("TaskMoved", "i-1 moved", allow_list([TaskMoved]))
    assert isinstance(exc, TaskMoved) and isinstance(exc, Conflict)
    assert isinstance(exc, RemoteError)
    assert (exc.exc_type, exc.message, exc.status) == ("TaskMoved", "i-1 moved", 409)
    assert str(exc) == "TaskMoved: i-1 moved"
    # Its name is the remote one, so a handler re-raising it sends the same type onwards.
    assert type(exc).__name__ == "TaskMoved"
    assert remote_class(TaskMoved) is type(exc)


def test_other_types_stay_remote_errors() -> None:
    exc = remote_error("NotFound", "gone", allow_list([TaskMoved]))
    assert type(exc) is RemoteError and not isinstance(exc, NotFound)


def test_bus_errors_are_always_typed() -> None:
    assert set(allow_list([])) == {kind.__name__ for kind in BUS_ERRORS}
    with pytest.raises(UnknownMethod):
        raise remote_error("UnknownMethod", "x is not a method", allow_list([]))


def test_two_types_of_one_name_are_refused() -> None:
    other = type("TaskMoved", (Conflict,), {})
    with pytest.raises(ValueError, match="two remote error types are named TaskMoved"):
        allow_list([TaskMoved, other])
    assert allow_list([TaskMoved, TaskMoved])["TaskMoved"] is TaskMoved
