"""Run an interoperability guideline's required Tempest tests against a throw-away Stratus.

    .venv/bin/python -m tools.interop.run [--check] [--record]

Starts ``stratus up`` (``cloud.Cloud``), makes its images and networks and writes
``tempest.conf`` (``tempest_conf``), runs the tests of the data file (``guideline`` maps
them onto the pinned Tempest) with ``tempest run --include-list`` (by name), and prints
``N passed, N failed, N skipped`` with each failure's test id and Tempest's reason, and any
request the cloud answered with a 5xx.

That main pass runs on the fake driver, so the tests Tempest skips there because they log
into a guest by SSH (``[validation] run_validation``) are run again in a second, small pass
against a cloud with real guests (``Cloud(real_guests=True)``: libvirt, linuxbridge, the
project's test guest, floating IPs the host reaches), and its results replace those skips
(``--no-validation`` leaves them skipped). ``--check`` exits 1 when fewer tests pass than
``passing.json`` records (the count only goes up) or when the cloud answered any request
with a 5xx; ``--record`` raises the record to this run's count. The work directory (cloud
data, Tempest workspace, logs, ``results.json``) is kept for reading after the run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tools.interop.cloud import Cloud, CloudError, Prepared, prepare, prepare_validation
from tools.interop.tempest_conf import render

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_TESTS = HERE / "tests" / "2020.06-os_powered_compute.json"
RECORD = HERE / "passing.json"
_ATTRS = re.compile(r"\[[^\]]*\]$")
#: Tempest's reason for skipping a test that logs into the guest when validation is off.
VALIDATION_SKIP = re.compile(r"validation tests are disabled", re.IGNORECASE)


@dataclass
class Outcome:
    """The run's result per test of the list."""

    passed: list[str]
    failed: list[tuple[str, str]]
    skipped: list[tuple[str, str]]


def load_tests(path: Path) -> list[str]:
    """The Tempest test ids of a data file (tests the pinned Tempest lacks are left out)."""
    data = json.loads(path.read_text())
    return [t["tempest_id"] for t in data["tests"] if t["tempest_id"]]


def outcome(tests: list[str], results: list[dict[str, str]]) -> Outcome:
    """Each listed test's status; a test that never reported (a class whose set-up failed)
    fails with the class's reason."""
    by_name = {_ATTRS.sub("", r["id"]): r for r in results}
    class_errors = {m.group(1): r for r in results
                    if (m := re.match(r"setUpClass \((.+)\)$", r["id"]))}
    passed: list[str] = []
    failed: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for test in tests:
        name = _ATTRS.sub("", test)
        result = by_name.get(name)
        if result is None:
            error = class_errors.get(name.rsplit(".", 1)[0])
            if error is not None and error["status"] == "skip":
                skipped.append((test, f"class skipped: {error['reason']}"))
            elif error is not None:
                failed.append((test, f"class set-up failed: {error['reason']}"))
            else:
                failed.append((test, "no result (the run did not reach it)"))
        elif result["status"] in ("success", "xfail"):
            passed.append(test)
        elif result["status"] == "skip":
            if (error := class_errors.get(name.rsplit(".", 1)[0])) and \
                    error["status"] != "skip":
                failed.append((test, f"class set-up failed: {error['reason']}"))
            else:
                skipped.append((test, result["reason"]))
        else:
            failed.append((test, result["reason"]))
    return Outcome(passed, failed, skipped)


def outcome_of_all(results: list[dict[str, str]]) -> Outcome:
    """Every test that reported (a ``--regex`` run has no list to hold them against); a class
    whose set-up failed or skipped counts once, under its class name."""
    passed: list[str] = []
    failed: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for result in results:
        name = m.group(1) if (m := re.match(r"setUpClass \((.+)\)$", result["id"])) \
            else _ATTRS.sub("", result["id"])
        if result["status"] in ("success", "xfail"):
            passed.append(name)
        elif result["status"] == "skip":
            skipped.append((name, result["reason"]))
        else:
            failed.append((name, result["reason"]))
    return Outcome(passed, failed, skipped)


def by_group(result: Outcome) -> list[str]:
    """``tempest.api.<group>``: passed / failed / skipped, one line each."""
    groups: dict[str, list[int]] = {}
    kinds: list[list[str]] = [result.passed, [t for t, _ in result.failed],
                              [t for t, _ in result.skipped]]
    for index, names in enumerate(kinds):
        for name in names:
            parts = name.split(".")
            group = ".".join(parts[:3]) if len(parts) > 3 else name
            groups.setdefault(group, [0, 0, 0])[index] += 1
    return [f"{group}: {p} passed, {f} failed, {s} skipped"
            for group, (p, f, s) in sorted(groups.items())]


def run_tempest(tempest_venv: Path, workspace: Path, conf: str, tests: list[str],
                concurrency: int, regex: str | None = None) -> list[dict[str, str]]:
    """``tempest run`` over ``tests`` (or every test matching ``regex``) in a new
    ``workspace`` configured by ``conf``; the results of its subunit stream."""
    tempest = tempest_venv / "bin" / "tempest"
    if workspace.exists():
        shutil.rmtree(workspace)
    # The workspace registry is the run's own (not ~/.tempest), so runs never collide.
    subprocess.run([str(tempest), "init", "--workspace-path",
                    str(workspace.parent / "workspaces.yaml"), "--name",
                    f"interop-{workspace.parent.name}-{workspace.name}", str(workspace)],
                   check=True, stdout=subprocess.DEVNULL)
    (workspace / "etc" / "tempest.conf").write_text(conf)
    # By name, not by the listed id: a test's attributes can depend on the configuration
    # (``slow`` only when validation is on), and an id with other attributes runs nothing.
    listing = workspace / "tests.txt"
    listing.write_text("".join(f"^{re.escape(_ATTRS.sub('', t))}\\[\n" for t in tests))
    selection = ["--regex", regex] if regex else ["--include-list", str(listing)]
    with (workspace / "run.log").open("wb") as log:
        subprocess.run([str(tempest), "run", *selection, "--concurrency", str(concurrency)],
                       cwd=workspace, stdout=log, stderr=subprocess.STDOUT, check=False)
    subunit_path = workspace / "last.subunit"
    with subunit_path.open("wb") as out:
        last = subprocess.run([str(tempest_venv / "bin" / "stestr"), "last", "--subunit"],
                              cwd=workspace, stdout=out, check=False)
    if last.returncode != 0:
        raise CloudError(f"Tempest ran no test (discovery failed?): see "
                         f"{workspace / 'run.log'}")
    results_path = workspace / "results.json"
    subprocess.run([str(tempest_venv / "bin" / "python"), str(HERE / "results.py"),
                    str(subunit_path), str(results_path)], check=True)
    results: list[dict[str, str]] = json.loads(results_path.read_text())["tests"]
    return results


def report(result: Outcome, server_errors: list[str]) -> list[str]:
    """The lines printed at the end: failures with reasons, 5xx lines, then the counts."""
    lines: list[str] = []
    for test, reason in sorted(result.failed):
        lines.append(f"FAILED {test}")
        lines.extend(f"    {line}" for line in reason.splitlines()[:4])
    for test, reason in sorted(result.skipped):
        lines.append(f"SKIPPED {test}: {reason.splitlines()[0] if reason else ''}")
    if server_errors:
        lines.append(f"The cloud answered {len(server_errors)} request(s) with a 5xx:")
        lines.extend(f"    {line}" for line in server_errors[:20])
    lines.append(f"{len(result.passed)} passed, {len(result.failed)} failed, "
                 f"{len(result.skipped)} skipped")
    return lines


def needing_validation(result: Outcome) -> list[str]:
    """The tests Tempest skipped because validation (SSH into the guest) is off."""
    return [test for test, reason in result.skipped if VALIDATION_SKIP.search(reason)]


def merged(main: Outcome, second: Outcome, rerun: list[str]) -> Outcome:
    """The main pass's outcome, the skips of the ``rerun`` tests replaced by the second
    pass's results."""
    return Outcome(main.passed + second.passed, main.failed + second.failed,
                   [s for s in main.skipped if s[0] not in rerun] + second.skipped)


def start_validation_cloud(args: argparse.Namespace) -> tuple[Cloud, Prepared]:
    """The real-guest cloud of the validation pass, started and prepared."""
    cloud = Cloud(args.stratus, args.workdir / "validation-cloud", real_guests=True)
    cloud.__enter__()
    try:
        return cloud, prepare_validation(cloud, prepare(cloud))
    except BaseException:
        cloud.stop()
        raise


def validation_pass(args: argparse.Namespace, starting: Future[tuple[Cloud, Prepared]],
                    tests: list[str]) -> tuple[Outcome, list[str]]:
    """``tests`` (the main pass skipped them for want of a guest to log into) against the
    real-guest cloud ``starting`` brings up; their outcome and the 5xx lines of its log."""
    cloud, prepared = starting.result()  # already running: stopped by the caller
    workspace = args.workdir / "tempest-validation"
    conf = render(prepared, workspace, isolated_networks=args.isolated_networks)
    # One Tempest worker per class: each boots its server in its class set-up.
    results = run_tempest(args.tempest_venv, workspace, conf, tests, min(args.concurrency, 2))
    return outcome(tests, results), cloud.server_errors()


def _stop_started(starting: Future[tuple[Cloud, Prepared]] | None) -> None:
    """Stop the validation cloud if it came up (stopping twice is harmless)."""
    if starting is None:
        return
    try:
        cloud, _ = starting.result()
    except Exception:  # it never came up: nothing to stop (the pass said why, if it ran)
        return
    cloud.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=Path, default=DEFAULT_TESTS)
    parser.add_argument("--tempest-venv", type=Path, default=REPO / ".venv-tempest")
    parser.add_argument("--stratus", type=Path, default=REPO / ".venv" / "bin" / "stratus")
    parser.add_argument("--workdir", type=Path, default=REPO / ".interop")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--isolated-networks", action="store_true",
                        help="a network, subnet and router per test project (Tempest's "
                             "default) instead of the shared network")
    parser.add_argument("--no-validation", action="store_true",
                        help="leave the tests that log into a guest by SSH skipped (no "
                             "second pass on a cloud with real guests)")
    parser.add_argument("--regex", help="run every Tempest test matching this instead of "
                        "the list (make tempest-full); counts per API group, no record")
    parser.add_argument("--check", action="store_true",
                        help="fail when fewer tests pass than passing.json records")
    parser.add_argument("--record", action="store_true",
                        help="raise passing.json's count to this run's")
    args = parser.parse_args(argv)

    started = time.monotonic()
    args.workdir = args.workdir.resolve()  # tempest.conf's paths must not be relative
    tests = [] if args.regex else load_tests(args.tests)
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    # The real-guest cloud of the validation pass comes up (and gets its image, flavor and
    # router) while the main pass runs: only its Tempest run adds to the wall time.
    background = ThreadPoolExecutor(max_workers=1)
    starting = (None if args.regex or args.no_validation
                else background.submit(start_validation_cloud, args))
    try:
        return _passes(args, tests, started, starting)
    finally:
        _stop_started(starting)
        background.shutdown()


def _passes(args: argparse.Namespace, tests: list[str], started: float,
            starting: Future[tuple[Cloud, Prepared]] | None) -> int:
    """The main pass, the validation pass when it has tests, the report; the exit status."""
    try:
        with Cloud(args.stratus, args.workdir / "cloud") as cloud:
            prepared = prepare(cloud)
            workspace = args.workdir / "tempest"
            conf = render(prepared, workspace, isolated_networks=args.isolated_networks)
            results = run_tempest(args.tempest_venv, workspace, conf, tests, args.concurrency,
                                  regex=args.regex)
            server_errors = cloud.server_errors()
    except CloudError as exc:
        print(f"interop: {exc}", file=sys.stderr)
        return 1
    if args.regex:
        result = outcome_of_all(results)
        for line in [*report(result, server_errors), *by_group(result)]:
            print(line)
        print(f"(tests matching {args.regex}, {time.monotonic() - started:.0f} s; "
              f"logs in {args.workdir})")
        return 1 if args.check and server_errors else 0
    result = outcome(tests, results)
    main_seconds = time.monotonic() - started
    timings = f"main pass {main_seconds:.0f} s"
    needing = needing_validation(result)
    if needing and starting is not None:
        second_started = time.monotonic()
        try:
            second, second_errors = validation_pass(args, starting, needing)
        except CloudError as exc:
            print(f"interop: the validation pass: {exc}", file=sys.stderr)
            return 1
        result = merged(result, second, needing)
        server_errors = server_errors + second_errors
        timings += (f", then the validation pass ({len(needing)} tests, real guests) "
                    f"{time.monotonic() - second_started:.0f} s: {len(second.passed)} passed, "
                    f"{len(second.failed)} failed, {len(second.skipped)} skipped")
    for line in report(result, server_errors):
        print(line)
    print(f"({len(tests)} tests of {args.tests.name}, {time.monotonic() - started:.0f} s: "
          f"{timings}; logs in {args.workdir})")
    recorded = json.loads(RECORD.read_text())["passed"] if RECORD.exists() else 0
    passed = len(result.passed)
    if args.record and passed > recorded:
        RECORD.write_text(json.dumps({"tests": args.tests.name, "passed": passed},
                                     indent=1) + "\n")
        print(f"Recorded {passed} passing (was {recorded}) in {RECORD.relative_to(REPO)}")
    if args.check and passed < recorded:
        print(f"interop: {passed} passed, fewer than the {recorded} recorded in "
              f"{RECORD.relative_to(REPO)}", file=sys.stderr)
        return 1
    if args.check and server_errors:
        print(f"interop: the cloud answered {len(server_errors)} request(s) with a 5xx "
              f"(a 500 is a bug): see {cloud.log}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
