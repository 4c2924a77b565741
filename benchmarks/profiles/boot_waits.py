"""``python -m benchmarks.profiles.boot_waits [boot options]``: ``boot --mode all-in-one``
with its cloud under ``waits_server.py``, which is told to measure over the concurrent
part; prints its report (what the loop was idle behind), the cloud's main thread's
scheduler figures (ran, waited for a CPU) and this client's own CPU over that part.

``PYTHONPATH`` picks the tree under test (the wrapper itself only patches names both trees
have). ``--out FILE`` keeps the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _cloud, boot
from benchmarks._cpu import scheduler_seconds

HERE = Path(__file__).resolve().parent
CLOUDS: list[_cloud.StratusUp] = []


def main() -> None:
    parser = argparse.ArgumentParser()
    boot.add_arguments(parser)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(["--mode", "all-in-one", *sys.argv[1:]])
    result = asyncio.run(_run(args))
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="boot-waits-")) / "report"
    os.environ["PROF_OUT"] = str(out)
    original_start = _cloud.StratusUp.start

    async def start(self: _cloud.StratusUp) -> None:
        self.command = [sys.executable, str(HERE / "waits_server.py")]
        CLOUDS.append(self)
        await original_start(self)

    _cloud.StratusUp.start = start  # type: ignore[method-assign]
    original_concurrent = boot._concurrent
    found: dict[str, Any] = {}

    async def concurrent(session: Any, a: argparse.Namespace, cpu: Any,
                         waits: Any = None, broker: Any = None) -> dict[str, float]:
        pid = CLOUDS[-1].pid
        client0 = time.process_time()
        ran0, waited0 = scheduler_seconds(pid, main_thread_only=True)
        all_ran0, all_waited0 = scheduler_seconds(pid)
        load0 = os.getloadavg()[0]
        os.kill(pid, signal.SIGUSR1)
        try:
            return await original_concurrent(session, a, cpu, waits, broker)
        finally:
            os.kill(pid, signal.SIGUSR2)
            ran1, waited1 = scheduler_seconds(pid, main_thread_only=True)
            all_ran1, all_waited1 = scheduler_seconds(pid)
            found.update(client_cpu_s=time.process_time() - client0,
                         main_thread_ran_s=ran1 - ran0, main_thread_runqueue_s=waited1 - waited0,
                         threads_ran_s=all_ran1 - all_ran0,
                         threads_runqueue_s=all_waited1 - all_waited0,
                         load_before=load0, load_after=os.getloadavg()[0])
            found["server"] = await asyncio.to_thread(_report, out)

    boot._concurrent = concurrent
    result = await boot.run(args)
    return {"metrics": {k: round(v, 3) for k, v in result.metrics.items()
                        if k.startswith("concurrent") or k.startswith("boot_p50")},
            **found}


def _report(out: Path) -> dict[str, Any]:
    """The server's report, once written."""
    done = Path(str(out) + ".done")
    for _ in range(200):
        if done.exists():
            break
        time.sleep(0.05)
    report: dict[str, Any] = json.loads(Path(str(out) + ".json").read_text())
    return report


if __name__ == "__main__":
    main()
