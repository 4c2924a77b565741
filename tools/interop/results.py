"""Read a Tempest run's subunit stream into JSON: each test's id, status and reason.

Runs under the Tempest venv's Python (it needs ``subunit`` and ``testtools``, which Tempest
installs), as a script, so it imports nothing of Stratus:

    .venv-tempest/bin/python tools/interop/results.py RUN.subunit OUT.json

OUT.json is ``{"tests": [{"id", "status", "reason"}]}``; ``status`` is subunit's
(``success``, ``fail``, ``skip``, ``xfail``, ``uxsuccess``, ``exists``); ``reason`` is the
first lines of the exception of a failure, the skip reason for a skip. A class whose set-up
failed shows as one ``setUpClass (...)`` entry, as Tempest reports it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import subunit
import testtools

#: How much of a traceback a reason keeps: the exception and what it says, not the stack.
_REASON_LINES = 4
_REASON_CHARS = 1500


def _text(details: dict[str, Any], key: str) -> str:
    content = details.get(key)
    if content is None:
        return ""
    return b"".join(bytes(chunk) for chunk in content.iter_bytes()).decode("utf-8", "replace")


def reason_of(status: str, details: dict[str, Any]) -> str:
    """Why a test did not pass: the skip reason, or the traceback's exception part."""
    if status == "skip":
        return _text(details, "reason").strip()
    trace = _text(details, "traceback")
    lines = trace.rstrip().splitlines()
    # The exception is after the last stack frame ("  File ..." and its source line).
    last_frame = max((i for i, line in enumerate(lines) if line.startswith("  File ")),
                     default=-1)
    tail = lines[last_frame + 2:] if last_frame >= 0 else lines
    # The exception's first lines say what failed (a schema error's message and the
    # keyword that failed); what follows is the schema and the body, printed whole.
    reason = "\n".join(line for line in tail if line.strip())
    reason = "\n".join(reason.splitlines()[:_REASON_LINES])
    return reason[:_REASON_CHARS]


def read(path: str) -> list[dict[str, str]]:
    """Every test in the stream with its final status and reason."""
    results: list[dict[str, str]] = []

    def on_test(test: dict[str, Any]) -> None:
        if test["status"] == "exists":
            return
        results.append({"id": test["id"], "status": test["status"],
                        "reason": reason_of(test["status"], test["details"])})

    with open(path, "rb") as stream:
        case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        try:
            case.run(result)
        finally:
            result.stopTestRun()
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: results.py RUN.subunit OUT.json", file=sys.stderr)
        return 2
    with open(argv[2], "w") as out:
        json.dump({"tests": read(argv[1])}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
