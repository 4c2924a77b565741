"""``stratus why``'s reading of spans and logs, without a cloud: a server stuck in a task,
and a text log's lines (with a traceback) found by the request's id."""

from __future__ import annotations

from pathlib import Path

from stratus.compute.diagnosis import ServerFacts, diagnose, log_lines_of
from stratus.core.spanstore import StoredSpan


def span(span_id: str, name: str, *, parent: str | None = None, start: int = 0,
         status: int = 0, request_id: str | None = "req-1", trace: str = "t1") -> StoredSpan:
    return StoredSpan(trace_id=trace, span_id=span_id, parent_id=parent, name=name, kind=0,
                      start_ns=start, end_ns=start + 1000, status=status,
                      status_message="VirtError: boom" if status == 2 else None,
                      request_id=request_id, instance_uuid="i-1", host="h", pid=1,
                      units="compute-agent", attributes={})


def facts(vm_state: str, task_state: str | None) -> ServerFacts:
    return ServerFacts(uuid="i-1", name="s", vm_state=vm_state, task_state=task_state,
                       host="h", updated_at=None, idle_seconds=600.0,
                       action_request_id="req-1")


def test_a_text_log_gives_the_request_lines_and_their_traceback(tmp_path: Path) -> None:
    log = tmp_path / "stratus.log"
    log.write_text(
        "2026-12-04 10:00:00,000 INFO stratus.web [req-2] GET /servers\n"
        "2026-12-04 10:00:01,000 ERROR stratus.compute.agent.manager [req-1] spawn failed\n"
        "Traceback (most recent call last):\n"
        "VirtError: boom\n"
        "2026-12-04 10:00:02,000 INFO stratus.web [req-2] GET /servers\n"
        '{"message": "json", "request_id": "req-9", "trace_id": "t1"}\n')
    assert log_lines_of([log, tmp_path / "absent.log"], {"req-1"}, "t1") == [
        "2026-12-04 10:00:01,000 ERROR stratus.compute.agent.manager [req-1] spawn failed",
        "Traceback (most recent call last):",
        "VirtError: boom",
        '{"message": "json", "request_id": "req-9", "trace_id": "t1"}']


def test_the_innermost_error_is_the_failed_step_and_a_task_without_one_is_stuck() -> None:
    spans = [span("a", "bus.call compute.build_and_run_instance", status=2),
             span("b", "compute.spawn", parent="a", start=10, status=2),
             span("c", "compute.fetch_image", parent="a", start=5)]
    failed = diagnose(facts("error", None), spans)
    assert failed.verdict == "error" and failed.step is not None
    assert failed.step.what == "compute.spawn" and failed.error == "VirtError: boom"
    building = [spans[2], span("p", "GET /servers", start=50, request_id="req-poll",
                                      trace="t2")]
    stuck = diagnose(facts("building", "spawning"), building)
    assert stuck.verdict == "stuck" and stuck.step is not None
    # Where the create got to, not the client's poll after it.
    assert stuck.step.what == "compute.fetch_image"
    assert "In task spawning for 600 s; nothing failed." in stuck.lines()
    assert stuck.host == "h" and "Host: h" in stuck.lines()
    assert diagnose(facts("active", None), spans).verdict == "fine"


def test_without_spans_the_last_actions_request_finds_the_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "stratus.log"
    log.write_text("2026-12-04 10:00:01,000 WARNING stratus.compute.agent.manager [req-1] "
                   "build of i-1 on h failed: boom\n")
    diagnosis = diagnose(facts("error", None), [], [log])
    assert diagnosis.step is None and diagnosis.request_ids == ["req-1"]
    assert diagnosis.log_lines == [log.read_text().rstrip("\n")]
    assert "No span of this server's requests is in the span store (they age out, or " \
        "tracing was off)." in diagnosis.lines()
