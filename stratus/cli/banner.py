"""What ``stratus up`` prints once the cloud serves: a few lines a user needs.

Which units run and which do not (and why, with the command that adds what is missing),
what each unit chose for this host (virt driver, network and volume backends, image store),
where to point the clients, and where the log is. Built from the unit registry and the
``Stack``'s records (``not_started``, ``choices``), so new units and backends show up
without changes here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def unit_lines(names: Iterable[str], not_started: dict[str, str]) -> list[str]:
    """``running      a b c`` and one ``not started`` line per distinct reason."""
    names = list(names)
    running = [name for name in names if name not in not_started]
    lines = [f"  running      {' '.join(running) if running else '(none)'}"]
    by_reason: dict[str, list[str]] = {}
    for name in names:
        if name in not_started:
            by_reason.setdefault(not_started[name], []).append(name)
    for reason, units in by_reason.items():
        lines.append(f"  not started  {', '.join(units)}: {reason}")
    return lines


def choice_lines(choices: dict[str, str]) -> list[str]:
    width = max((len(what) for what in choices), default=0)
    return [f"  {what:<{width}}  {choice}" for what, choice in choices.items()]


def up_lines(*, base_url: str, names: Iterable[str], not_started: dict[str, str],
             choices: dict[str, str], clouds_yaml: Path, log_file: Path | None) -> list[str]:
    """The summary ``stratus up`` prints when serving (without the ``export`` line, which
    goes to stdout)."""
    log = f" (log: {log_file})" if log_file is not None else ""
    names = list(names)
    dashboard = ([f"Dashboard: {base_url}/dashboard/"]
                 if "dashboard" in names and "dashboard" not in not_started else [])
    return [
        f"Stratus is up at {base_url}{log}",
        *unit_lines(names, not_started),
        *choice_lines(choices),
        *dashboard,
        f"Identity: {base_url}/identity/v3",
        f"clouds.yaml: {clouds_yaml} (cloud 'stratus': user admin, project admin)",
    ]
