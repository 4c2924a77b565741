"""``python benchmarks/profiles/counted_server.py up ...``: ``stratus up`` in this process,
with counters a client switches on and off by signal (used by ``port_creates``).

SIGUSR1 starts counting: the process's CPU time (all threads), every SQL statement sent (by
its text) and, with ``PROF=1``, a cProfile of the event loop's thread (by wall time, or by
its CPU time with ``PROF_CLOCK=thread``). SIGUSR2 stops and
writes ``$PROF_OUT.json`` (and ``$PROF_OUT.prof``), then ``$PROF_OUT.done``. Any tree's
``stratus`` runs under it unchanged, so two trees are measured by the same code.
"""

from __future__ import annotations

import cProfile
import json
import os
import signal
import sys
import time
from collections import Counter
from types import FrameType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

#: ``PROF_CLOCK=thread``: the profile counts the loop thread's CPU time
#: (``time.thread_time``) instead of wall time, so a loaded machine's preemptions (a
#: ``send`` that wakes the client, the loop waiting for a core) are not charged to the
#: function that was running when they came.
_CLOCK = time.thread_time if os.environ.get("PROF_CLOCK") == "thread" else None
PROFILE = ((cProfile.Profile(_CLOCK) if _CLOCK else cProfile.Profile())
           if os.environ.get("PROF") == "1" else None)
STATE: dict[str, Any] = {"on": False, "sql": 0, "commits": 0, "cpu0": 0.0, "wall0": 0.0}
STATEMENTS: Counter[str] = Counter()


@event.listens_for(Engine, "before_cursor_execute")
def _count(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
           executemany: bool) -> None:
    if STATE["on"]:
        STATE["sql"] += 1
        STATEMENTS[" ".join(statement.split())[:160]] += 1


@event.listens_for(Engine, "commit")
def _commit(conn: Any) -> None:
    # A transaction's COMMIT (the driver's, not a statement: not in ``sql``).
    if STATE["on"]:
        STATE["commits"] += 1


def _on(signum: int, frame: FrameType | None) -> None:
    STATEMENTS.clear()
    STATE.update(sql=0, commits=0, cpu0=time.process_time(), wall0=time.perf_counter(), on=True)
    if PROFILE is not None:
        PROFILE.enable()


def _off(signum: int, frame: FrameType | None) -> None:
    if PROFILE is not None:
        PROFILE.disable()
    STATE["on"] = False
    out = os.environ["PROF_OUT"]
    with open(out + ".json", "w") as f:
        json.dump({"cpu_s": time.process_time() - STATE["cpu0"],
                   "wall_s": time.perf_counter() - STATE["wall0"], "sql": STATE["sql"],
                   "commits": STATE["commits"],
                   "stmts": STATEMENTS.most_common()}, f, indent=1)
    if PROFILE is not None:
        PROFILE.dump_stats(out + ".prof")
    with open(out + ".done", "w") as f:
        f.write("1")


def main() -> None:
    signal.signal(signal.SIGUSR1, _on)
    signal.signal(signal.SIGUSR2, _off)
    sys.argv = ["stratus", *sys.argv[1:]]
    from stratus.cli.main import main as stratus_main

    stratus_main()


if __name__ == "__main__":
    main()
