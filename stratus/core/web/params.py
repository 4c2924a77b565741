"""Boolean and integer query parameters: the one parser, with each API's dialect named.

Every OpenStack API reads ``?flag=...`` its own way, and clients depend on the difference,
so the dialects below are kept as they are, not merged:

========== ============================================ =================================
dialect     true                                         false / otherwise
========== ============================================ =================================
NOVA        true 1 yes on t y                            false 0 no off f n; else 400
NOVA_FLAG   anything else                                0 false off no
CINDER      as NOVA, value stripped first                else 400
GLANCE      true 1 yes on                                false 0 no off; else 400
KEYSTONE    1 true yes on, and the empty value           0 false no off; else 400
KEYSTONE_FLAG  anything else                             0 false no
NEUTRON     true                                         false; else 400
NEUTRON_FLAG   true                                      anything else
========== ============================================ =================================

Words compare case-blind. A *strict* dialect rejects a word outside both tables with its
API's message; a *lenient* one (``*_FLAG``, for switches such as Nova's ``all_tenants`` or
Keystone's ``nocatalog``) treats a word outside its false table as true — or, for
NEUTRON_FLAG (``page_reverse``), outside its true table as false.

Integers: each dialect has its "not an integer" and "too small" messages. A call site whose
API words one parameter differently (Nova's ``limit``) derives a dialect with ``replace``.
The error class is a field too: Neutron raises its own ``InvalidInput`` (its body names the
type), which the network service plugs in with ``dialect.raising(InvalidInput)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from stratus.core.exceptions import BadRequest, StratusError, ValidationError

#: (parameter name, value as sent) → message.
BoolMessage = Callable[[str, str], str]
#: (parameter name, value as sent, minimum) → message.
IntMessage = Callable[[str, str, int], str]


@dataclass(frozen=True)
class Dialect:
    """How one API reads booleans and integers from a query string."""

    name: str
    true: frozenset[str]
    false: frozenset[str]
    #: "strict": outside both tables is an error; "true": outside ``false`` is true;
    #: "false": outside ``true`` is false.
    otherwise: str = "strict"
    strip: bool = False
    empty_is_true: bool = False
    error: type[StratusError] = BadRequest
    bool_message: BoolMessage = lambda name, value: f"Invalid value {value!r} for {name}."
    int_message: IntMessage = lambda name, value, minimum: f"Invalid {name}: {value!r}."
    min_message: IntMessage = lambda name, value, minimum: f"{name} must be >= {minimum}."

    def raising(self, error: type[StratusError]) -> Dialect:
        """This dialect, raising ``error`` (an API's own subclass) instead."""
        return dataclasses.replace(self, error=error)

    def boolean(self, name: str, value: str) -> bool:
        """``value`` (as sent) read as a boolean; the dialect's error when it is none."""
        word = (value.strip() if self.strip else value).lower()
        if word == "" and self.empty_is_true:
            return True
        if word in self.true:
            return True
        if word in self.false:
            return False
        if self.otherwise == "true":
            return True
        if self.otherwise == "false":
            return False
        raise self.error(self.bool_message(name, value))

    def optional_boolean(self, name: str, value: str | None) -> bool | None:
        """``boolean``, or None when the parameter was not sent."""
        return None if value is None else self.boolean(name, value)

    def flag(self, name: str, value: str | None) -> bool:
        """A switch: False when absent, else ``boolean``."""
        return value is not None and self.boolean(name, value)

    def integer(self, name: str, value: str, minimum: int | None = 0) -> int:
        """``value`` as an integer no smaller than ``minimum`` (None: any)."""
        try:
            number = int(value)
        except ValueError:
            raise self.error(self.int_message(name, value, minimum or 0)) from None
        if minimum is not None and number < minimum:
            raise self.error(self.min_message(name, value, minimum))
        return number

    def optional_integer(self, name: str, value: str | None,
                         minimum: int | None = 0) -> int | None:
        return None if value is None else self.integer(name, value, minimum)


_NOVA_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_NOVA_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})

#: Nova's strict filters (``locked``, ``deleted``, flavor ``is_public``).
NOVA = Dialect(
    "nova", _NOVA_TRUE, _NOVA_FALSE,
    bool_message=lambda name, value: f"Invalid value {value!r} for the '{name}' filter: "
                                     "true or false.",
    int_message=lambda name, value, _: f"Invalid {name} value: {value!r} is not an integer.",
    min_message=lambda name, _, minimum: f"Invalid {name} value: it must be >= {minimum}.",
    error=BadRequest,
)
#: Nova's switches (``all_tenants``): sent and not a "no" word means yes.
NOVA_FLAG = dataclasses.replace(NOVA, name="nova-flag", true=frozenset(),
                                false=frozenset({"0", "false", "off", "no"}), otherwise="true")

#: Cinder: Nova's words, blanks around the value ignored.
CINDER = Dialect(
    "cinder", _NOVA_TRUE, _NOVA_FALSE, strip=True,
    bool_message=lambda name, value: f"Invalid input received: {name} must be a boolean, "
                                     f"not {value!r}.",
    int_message=lambda name, _, __: f"Invalid input received: {name} must be an integer.",
    min_message=lambda name, _, minimum: f"Invalid input received: {name} must be >= "
                                         f"{minimum}.",
)

GLANCE = Dialect(
    "glance", frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"}),
    error=ValidationError,
    bool_message=lambda name, value: f"Invalid value for the filter '{name}': {value!r} is "
                                     "not a boolean.",
    int_message=lambda name, value, _: f"Invalid value for '{name}': {value!r} is not an "
                                       "integer.",
    min_message=lambda name, _, minimum: f"Invalid value for '{name}': must be at least "
                                         f"{minimum}.",
)

#: Keystone's boolean filters (``?enabled=false``); ``?enabled`` alone means true.
KEYSTONE = dataclasses.replace(GLANCE, name="keystone", empty_is_true=True)
#: Keystone's switches (``nocatalog``, ``allow_expired``): sent and not a "no" word is yes.
KEYSTONE_FLAG = dataclasses.replace(KEYSTONE, name="keystone-flag", true=frozenset(),
                                    false=frozenset({"0", "false", "no"}),
                                    empty_is_true=False, otherwise="true")

NEUTRON = Dialect(
    "neutron", frozenset({"true"}), frozenset({"false"}),
    bool_message=lambda name, value: f"Invalid input for {name}. Reason: '{value}' is not a "
                                     "valid boolean value.",
    int_message=lambda name, value, _: f"Invalid input for {name}: '{value}' is not an "
                                       "integer.",
    min_message=lambda name, _, __: f"Invalid input for {name}: it must not be negative.",
)
#: Neutron's ``page_reverse``: only "true" (any case) turns it on.
NEUTRON_FLAG = dataclasses.replace(NEUTRON, name="neutron-flag", otherwise="false")
