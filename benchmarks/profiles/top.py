"""``python -m benchmarks.profiles.top FILE [N]``: the top N functions (default 15) of a
py-spy collapsed-stack file (``--format raw --threads``) by self and by inclusive samples,
as Markdown tables (each function counted once per stack, however often it recurs in it).

Only the event loop's thread (``MainThread``) is counted, and not its samples waiting in
``select``: py-spy takes a thread blocked in C (aiosqlite's workers on their queue, the
loop in epoll) for busy, so the other threads' samples are mostly waits; their CPU is
measured apart (``bootcpu``'s ``main_thread_cpu_ms_per_boot`` against the whole)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

#: py-spy's frame: ``function (file:line)``; the line is dropped so a function is one row.
FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


IDLE = ("EpollSelector.select ",)


def _frame(raw: str) -> str:
    match = FRAME.match(raw.strip())
    if match is None:
        return raw.strip()
    path = match["file"]
    for marker in ("site-packages/", "/stratus/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/stratus/":
                path = "stratus/" + path
            break
    return f"{match['name']} ({path})"


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        raw_frames = stack.split(";")
        if not raw_frames[0].endswith("MainThread"):
            continue
        frames = [_frame(f) for f in raw_frames[1:]]
        if not frames or frames[-1].startswith(IDLE):
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own, inclusive


def main() -> None:
    path = Path(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    total, own, inclusive = summarise(path)
    print(f"{total} samples\n")
    ours = Counter({name: count for name, count in inclusive.items() if "stratus/" in name})
    for title, counter in (("self", own), ("inclusive, Stratus's functions", ours)):
        print(f"| # | {title} % | function (file) |\n|---|---|---|")
        for rank, (name, count) in enumerate(counter.most_common(top), 1):
            print(f"| {rank} | {100 * count / total:.1f} | `{name}` |")
        print()


if __name__ == "__main__":
    main()
