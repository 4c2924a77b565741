"""Map an interoperability guideline's required tests onto the pinned Tempest's test ids.

The guideline (a JSON file of the ``openstack/interop`` repository, kept under
``tools/interop/guidelines/``) names each required test by its Tempest name at the time the
guideline was approved, with its idempotent id. Tempest renames and moves tests, and one
test method may run in several classes (an IPv4 and an IPv6 variant), so the id is the key:
each guideline test maps to the listed Tempest test whose name (without its ``[...]``
attributes) is the guideline's name or one of its aliases, else to the only listed test
carrying the id. Flagged tests (the working group excused them) are left out.

    .venv/bin/python -m tools.interop.guideline \\
        --guideline tools/interop/guidelines/2020.06.json \\
        --component os_powered_compute --tempest-list list.txt \\
        --out tools/interop/tests/2020.06-os_powered_compute.json

``--tempest-list`` is the output of ``tempest run --list-tests`` (``make interop-list``
writes it); the output is the data ``make interop`` runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_ATTRS = re.compile(r"\[([^\]]*)\]$")


@dataclass(frozen=True)
class RequiredTest:
    """One required test: the guideline's name and id, and the pinned Tempest's test id."""

    capability: str
    guideline_name: str
    idempotent_id: str
    tempest_id: str | None


class MappingError(Exception):
    """The guideline or the Tempest list cannot be read or mapped."""


def required_tests(guideline: dict[str, Any], component: str) -> list[tuple[str, str, str,
                                                                         list[str]]]:
    """The component's required, non-flagged tests: (capability, name, uuid, aliases)."""
    try:
        capabilities = guideline["components"][component]["capabilities"]["required"]
    except KeyError as exc:
        raise MappingError(f"the guideline has no required capabilities for component "
                           f"{component!r}") from exc
    found: list[tuple[str, str, str, list[str]]] = []
    for capability in capabilities:
        tests: dict[str, dict[str, Any]] = guideline["capabilities"][capability]["tests"]
        for name, test in tests.items():
            if "flagged" in test:
                continue
            uuid = str(test["idempotent_id"]).removeprefix("id-")
            found.append((capability, name, uuid, list(test.get("aliases", []))))
    return found


def index_by_id(tempest_ids: list[str]) -> dict[str, list[str]]:
    """Listed Tempest test ids grouped by the idempotent id among their attributes."""
    by_id: dict[str, list[str]] = {}
    for test_id in tempest_ids:
        match = _ATTRS.search(test_id)
        if match is None:
            continue
        for attr in match.group(1).split(","):
            if attr.startswith("id-"):
                by_id.setdefault(attr.removeprefix("id-"), []).append(test_id)
    return by_id


def map_tests(guideline: dict[str, Any], component: str,
              tempest_ids: list[str]) -> list[RequiredTest]:
    """Each required test with the Tempest test id it runs as (``None``: not in this Tempest)."""
    by_id = index_by_id(tempest_ids)
    mapped: list[RequiredTest] = []
    for capability, name, uuid, aliases in required_tests(guideline, component):
        candidates = by_id.get(uuid, [])
        names = {name, *aliases}
        exact = [c for c in candidates if _ATTRS.sub("", c) in names]
        chosen = exact[0] if exact else (candidates[0] if len(candidates) == 1 else None)
        mapped.append(RequiredTest(capability, name, uuid, chosen))
    return mapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guideline", type=Path, required=True)
    parser.add_argument("--component", default="os_powered_compute")
    parser.add_argument("--tempest-list", type=Path, required=True,
                        help="the output of `tempest run --list-tests`")
    parser.add_argument("--tempest-version", required=True,
                        help="the pinned Tempest the list comes from")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    guideline = json.loads(args.guideline.read_text())
    tempest_ids = [line.strip() for line in args.tempest_list.read_text().splitlines()
                   if line.startswith("tempest.")]
    try:
        mapped = map_tests(guideline, args.component, tempest_ids)
    except MappingError as exc:
        print(f"guideline: {exc}", file=sys.stderr)
        return 1
    data = {
        "guideline": args.guideline.name,
        "component": args.component,
        "tempest_version": args.tempest_version,
        "tempest_reference": guideline.get("test_repositories", {}).get("tempest", {})
                                      .get("reference"),
        "tests": [asdict(t) for t in mapped],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    missing = [t.guideline_name for t in mapped if t.tempest_id is None]
    print(f"{len(mapped)} required tests, {len(mapped) - len(missing)} mapped onto this "
          f"Tempest; not found: {len(missing)}")
    for name in missing:
        print(f"  not in this Tempest: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
