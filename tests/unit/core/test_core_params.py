"""The boolean and integer dialects of ``stratus.core.web.params``: each API's truth table
and error texts, as the services answered them before the move."""

from __future__ import annotations

import pytest

from stratus.core.exceptions import BadRequest, StratusError, ValidationError
from stratus.core.web import params
from stratus.core.web.params import Dialect

WORDS = ["true", "TRUE", "1", "yes", "on", "t", "y", "false", "False", "0", "no", "off",
         "f", "n", "", " true ", "maybe", "none"]

#: dialect → word → True / False / "error".
TABLES: dict[str, dict[str, object]] = {
    "nova": {"true": True, "TRUE": True, "1": True, "yes": True, "on": True, "t": True,
             "y": True, "false": False, "False": False, "0": False, "no": False, "off": False,
             "f": False, "n": False, "": "error", " true ": "error", "maybe": "error",
             "none": "error"},
    "nova-flag": {"true": True, "TRUE": True, "1": True, "yes": True, "on": True, "t": True,
                  "y": True, "false": False, "False": False, "0": False, "no": False,
                  "off": False, "f": True, "n": True, "": True, " true ": True,
                  "maybe": True, "none": True},
    "cinder": {"true": True, "TRUE": True, "1": True, "yes": True, "on": True, "t": True,
               "y": True, "false": False, "False": False, "0": False, "no": False,
               "off": False, "f": False, "n": False, "": "error", " true ": True,
               "maybe": "error", "none": "error"},
    "glance": {"true": True, "TRUE": True, "1": True, "yes": True, "on": True, "t": "error",
               "y": "error", "false": False, "False": False, "0": False, "no": False,
               "off": False, "f": "error", "n": "error", "": "error", " true ": "error",
               "maybe": "error", "none": "error"},
    "keystone": {"true": True, "TRUE": True, "1": True, "yes": True, "on": True, "t": "error",
                 "y": "error", "false": False, "False": False, "0": False, "no": False,
                 "off": False, "f": "error", "n": "error", "": True, " true ": "error",
                 "maybe": "error", "none": "error"},
    "keystone-flag": {"true": True, "TRUE": True, "1": True, "yes": True, "on": True,
                      "t": True, "y": True, "false": False, "False": False, "0": False,
                      "no": False, "off": True, "f": True, "n": True, "": True,
                      " true ": True, "maybe": True, "none": True},
    "neutron": {"true": True, "TRUE": True, "1": "error", "yes": "error", "on": "error",
                "t": "error", "y": "error", "false": False, "False": False, "0": "error",
                "no": "error", "off": "error", "f": "error", "n": "error", "": "error",
                " true ": "error", "maybe": "error", "none": "error"},
    "neutron-flag": {"true": True, "TRUE": True, "1": False, "yes": False, "on": False,
                     "t": False, "y": False, "false": False, "False": False, "0": False,
                     "no": False, "off": False, "f": False, "n": False, "": False,
                     " true ": False, "maybe": False, "none": False},
}
DIALECTS: dict[str, Dialect] = {
    d.name: d for d in (params.NOVA, params.NOVA_FLAG, params.CINDER, params.GLANCE,
                        params.KEYSTONE, params.KEYSTONE_FLAG, params.NEUTRON,
                        params.NEUTRON_FLAG)
}


@pytest.mark.parametrize("dialect", sorted(TABLES))
@pytest.mark.parametrize("word", WORDS)
def test_truth_table(dialect: str, word: str) -> None:
    expected = TABLES[dialect][word]
    parse = DIALECTS[dialect]
    if expected == "error":
        with pytest.raises(BadRequest):
            parse.boolean("flag", word)
    else:
        assert parse.boolean("flag", word) is expected


@pytest.mark.parametrize(("dialect", "error", "message"), [
    (params.NOVA, BadRequest, "Invalid value 'maybe' for the 'locked' filter: true or false."),
    (params.CINDER, BadRequest,
     "Invalid input received: locked must be a boolean, not 'maybe'."),
    (params.GLANCE, ValidationError,
     "Invalid value for the filter 'locked': 'maybe' is not a boolean."),
    (params.KEYSTONE, ValidationError,
     "Invalid value for the filter 'locked': 'maybe' is not a boolean."),
    (params.NEUTRON, BadRequest,
     "Invalid input for locked. Reason: 'maybe' is not a valid boolean value."),
])
def test_boolean_error_texts(dialect: Dialect, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        dialect.boolean("locked", "maybe")
    assert str(caught.value) == message
    assert caught.value.status == 400  # type: ignore[attr-defined]


@pytest.mark.parametrize(("dialect", "not_int", "too_small"), [
    (params.NOVA, "Invalid minDisk value: 'x' is not an integer.",
     "Invalid minDisk value: it must be >= 0."),
    (params.CINDER, "Invalid input received: minDisk must be an integer.",
     "Invalid input received: minDisk must be >= 0."),
    (params.GLANCE, "Invalid value for 'minDisk': 'x' is not an integer.",
     "Invalid value for 'minDisk': must be at least 0."),
    (params.NEUTRON, "Invalid input for minDisk: 'x' is not an integer.",
     "Invalid input for minDisk: it must not be negative."),
])
def test_integer_error_texts(dialect: Dialect, not_int: str, too_small: str) -> None:
    assert dialect.integer("minDisk", "12") == 12
    assert dialect.integer("minDisk", "-3", minimum=None) == -3
    with pytest.raises(BadRequest, match="^" + not_int.replace("(", r"\(") + "$"):
        dialect.integer("minDisk", "x")
    with pytest.raises(BadRequest) as caught:
        dialect.integer("minDisk", "-1")
    assert str(caught.value) == too_small


def test_optional_and_flag_forms() -> None:
    assert params.KEYSTONE.optional_boolean("enabled", None) is None
    assert params.KEYSTONE.optional_boolean("enabled", "") is True
    assert params.NOVA_FLAG.flag("all_tenants", None) is False
    assert params.NOVA_FLAG.flag("all_tenants", "") is True
    assert params.KEYSTONE_FLAG.flag("nocatalog", "1") is True
    assert params.CINDER.optional_integer("limit", None) is None


def test_raising_an_api_error_class() -> None:
    class InvalidInput(BadRequest):
        pass

    neutron = params.NEUTRON.raising(InvalidInput)
    with pytest.raises(InvalidInput, match="is not a valid boolean value"):
        neutron.boolean("admin_state_up", "yes")
    with pytest.raises(InvalidInput):
        neutron.integer("limit", "many")
    assert params.NEUTRON.error is BadRequest  # the shared dialect is unchanged


def test_every_error_is_a_stratus_400() -> None:
    for dialect in DIALECTS.values():
        assert issubclass(dialect.error, StratusError)
        assert dialect.error.status == 400
