"""CPU time of another process, to the nanosecond.

``psutil``'s ``cpu_times`` reads ``/proc/PID/stat``, whose user and system times are in
clock ticks (10 ms here): a figure taken over 20 requests of ~10 ms each was off by up to
two ticks, ±10 %. The kernel keeps the thread group's run time in nanoseconds (every thread,
the exited ones included) and lets any process read it through the target's POSIX CPU clock
(``clock_getcpuclockid``), which Python does not wrap: the clock id is computed as glibc
does (``(~pid << 3) | CPUCLOCK_SCHED``).
"""

from __future__ import annotations

import os
import time

#: The scheduler's run-time clock (``CPUCLOCK_SCHED``), per process (not per thread).
_CPUCLOCK_SCHED = 2


def process_cpu_seconds(pid: int) -> float:
    """Seconds of CPU the process ``pid`` (all its threads, living and exited) has run;
    ``ProcessLookupError`` when it is gone."""
    try:
        return time.clock_gettime_ns((~pid << 3) | _CPUCLOCK_SCHED) / 1e9
    except OSError as exc:  # EINVAL: no such process (any more)
        raise ProcessLookupError(pid) from exc


def scheduler_seconds(pid: int, *, main_thread_only: bool = False) -> tuple[float, float]:
    """(seconds run on a CPU, seconds waited runnable for one) of the process ``pid``'s
    living threads (``/proc/PID/task/*/schedstat``; or its main thread alone, an event
    loop's): how much of a slow operation was this process's own work and how much the
    machine's other load keeping it off the CPUs."""
    tasks = [str(pid)] if main_thread_only else _tasks(pid)
    ran = waited = 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except OSError:  # a thread that ended meanwhile
            continue
        ran += int(fields[0])
        waited += int(fields[1])
    return ran / 1e9, waited / 1e9


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError as exc:
        raise ProcessLookupError(pid) from exc


def run_queue_wait_seconds(pid: int) -> float:
    """Seconds the living threads of process ``pid`` have spent runnable but waiting for a
    CPU: on a machine shared with other work, the time a process that had work to do could
    not run. Threads that exited are not counted; ``ProcessLookupError`` when the process
    is gone."""
    return scheduler_seconds(pid)[1]
