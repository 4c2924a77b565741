"""tools/interop: the guideline's tests mapped by idempotent id, and a run's outcome."""

from __future__ import annotations

import json
from pathlib import Path

from tools.interop.cloud import Admin, Prepared
from tools.interop.guideline import map_tests
from tools.interop.run import RECORD, Outcome, load_tests, merged, needing_validation, outcome
from tools.interop.tempest_conf import render

GUIDELINE = {
    "components": {"c": {"capabilities": {"required": ["cap"]}}},
    "capabilities": {"cap": {"tests": {
        "tempest.api.a.test_x.XTest.test_one": {"idempotent_id": "id-1111"},
        "tempest.api.a.test_x.XTest.test_old_name": {"idempotent_id": "id-2222"},
        "tempest.api.a.test_x.XTest.test_flagged": {"idempotent_id": "id-3333",
                                                    "flagged": {"reason": "x"}},
        "tempest.api.a.test_x.XTest.test_gone": {"idempotent_id": "id-4444"},
        "tempest.api.a.test_x.XTest.test_alias": {"idempotent_id": "id-5555",
                                                  "aliases": ["tempest.api.b.YTest.test_alias"]},
    }}},
}
LISTED = [
    # The IPv6 variant carries the same id: the guideline's own class wins.
    "tempest.api.a.test_x.XV6Test.test_one[id-1111]",
    "tempest.api.a.test_x.XTest.test_one[id-1111,smoke]",
    "tempest.api.a.test_x.XTest.test_new_name[id-2222]",
    "tempest.api.a.test_x.XTest.test_flagged[id-3333]",
    "tempest.api.b.YTest.test_alias[id-5555]",
    "tempest.api.c.ZTest.test_alias[id-5555]",
]


def test_guideline_tests_map_by_idempotent_id() -> None:
    mapped = {t.guideline_name.rsplit(".", 1)[1]: t.tempest_id
              for t in map_tests(GUIDELINE, "c", LISTED)}
    assert mapped == {
        "test_one": "tempest.api.a.test_x.XTest.test_one[id-1111,smoke]",
        "test_old_name": "tempest.api.a.test_x.XTest.test_new_name[id-2222]",
        "test_gone": None,
        "test_alias": "tempest.api.b.YTest.test_alias[id-5555]",
    }


def test_outcome_counts_class_failures_and_skips_per_test() -> None:
    tests = ["t.A.test_ok[id-1]", "t.A.test_bad[id-2]", "t.B.test_x[id-3]",
             "t.C.test_y[id-4]", "t.D.test_z[id-5]", "t.A.test_skip[id-6]"]
    results = [
        {"id": "t.A.test_ok[id-1,smoke]", "status": "success", "reason": ""},
        {"id": "t.A.test_bad[id-2]", "status": "fail", "reason": "schema"},
        {"id": "t.A.test_skip[id-6]", "status": "skip", "reason": "no feature"},
        {"id": "setUpClass (t.B)", "status": "fail", "reason": "500"},
        {"id": "setUpClass (t.C)", "status": "skip", "reason": "no extension"},
    ]
    result = outcome(tests, results)
    assert result.passed == ["t.A.test_ok[id-1]"]
    assert dict(result.failed) == {
        "t.A.test_bad[id-2]": "schema",
        "t.B.test_x[id-3]": "class set-up failed: 500",
        "t.D.test_z[id-5]": "no result (the run did not reach it)",
    }
    assert dict(result.skipped) == {"t.C.test_y[id-4]": "class skipped: no extension",
                                    "t.A.test_skip[id-6]": "no feature"}


def test_the_recorded_count_is_of_the_kept_list() -> None:
    record = json.loads(RECORD.read_text())
    tests = load_tests(Path(RECORD.parent / "tests" / record["tests"]))
    assert len(tests) == 217
    assert 0 < record["passed"] <= len(tests)


def test_the_validation_pass_replaces_the_skips_of_the_tests_it_ran() -> None:
    main = Outcome(["t.A.test_ok"], [], [
        ("t.S.test_vcpus", "Instance validation tests are disabled."),
        ("t.S.test_hostname", "Instance validation tests are disabled."),
        ("t.F.test_x", "no feature")])
    rerun = needing_validation(main)
    assert rerun == ["t.S.test_vcpus", "t.S.test_hostname"]
    second = Outcome(["t.S.test_vcpus"], [("t.S.test_hostname", "ssh timed out")], [])
    result = merged(main, second, rerun)
    assert result.passed == ["t.A.test_ok", "t.S.test_vcpus"]
    assert result.failed == [("t.S.test_hostname", "ssh timed out")]
    assert result.skipped == [("t.F.test_x", "no feature")]


def test_tempest_conf_turns_validation_on_only_for_real_guests(tmp_path: Path) -> None:
    import configparser

    prepared = Prepared(
        admin=Admin("http://x/identity/v3", "admin", "pw", "admin", "Default", "RegionOne"),
        endpoints={}, compute_versions=("2.1", "2.96"), volume_versions=("3.0", "3.60"),
        network_extensions=["router"], volume_extensions=None, image_ref="i",
        image_ref_alt="j", flavor_ref="1", flavor_ref_alt="2", shared_network="n",
        external_network_id="e")
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(render(prepared, tmp_path))
    assert conf["validation"]["run_validation"] == "false"
    prepared.validation = True
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(render(prepared, tmp_path))
    assert {k: conf["validation"][k] for k in ("run_validation", "connect_method",
                                                "auth_method", "image_ssh_user")} == {
        "run_validation": "true", "connect_method": "floating", "auth_method": "keypair",
        "image_ssh_user": "root"}
