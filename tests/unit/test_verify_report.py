"""verify.report: human lines, the JSON document and JUnit XML (structure checked element by element)."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from jitsi_ops.verify.model import Outcome, Status, VerifyReport
from jitsi_ops.verify.report import (
    as_json,
    human_lines,
    junit_xml,
    scrubbed,
    summary_line,
    write_junit,
)

SECRET = "0123456789abcdef0123456789abcdef"


def outcome(
    check_id: str, status: Status, observed: str = "", hint: str = "", host: str = "sandbox"
) -> Outcome:
    return Outcome(
        id=check_id,
        host=host,
        role="main" if host == "sandbox" else "jvb",
        description=f"description of {check_id}",
        status=status,
        observed=observed,
        hint=hint,
        attempts=1 if status != "fail" else 4,
        duration=0.25,
    )


REPORT = VerifyReport(
    env="sandbox",
    release="stable-11146-2",
    outcomes=(
        outcome("host.docker", "pass", "Docker Engine 20.10.24 (minimum 20.10)"),
        outcome(
            "conference.bridges",
            "fail",
            "operational_bridge_count 0 (bridge_count 0), expected >= 1",
            "JVB_AUTH_PASSWORD must match the account prosody stored",
        ),
        outcome("media.advertise_ips", "warn", "JVB_ADVERTISE_IPS is not set", "set it"),
        outcome("conference.jvb_health", "fail", "jvb /about/health answered 500", host="jvb1"),
    ),
    duration=12.34,
    timeout=90.0,
    started_at="2026-11-26T06:30:00+00:00",
)


def test_human_lines_show_observed_only_where_it_matters() -> None:
    lines = human_lines(REPORT)
    text = "\n".join(lines)
    assert lines[0].split() == ["sandbox", "host.docker", "PASS"], lines[0]
    assert "conference.bridges" in lines[1] and "FAIL" in lines[1], lines[1]
    assert "operational_bridge_count 0" in lines[1], lines[1]
    assert lines[2].strip() == "hint: JVB_AUTH_PASSWORD must match the account prosody stored"
    assert "WARN  JVB_ADVERTISE_IPS is not set" in text, text
    assert lines[-1] == summary_line(REPORT), lines[-1]
    assert lines[-1] == "verify sandbox (stable-11146-2): 1 passed, 1 warning, 2 failed in 12.3s"
    verbose = "\n".join(human_lines(REPORT, verbose=True))
    assert "Docker Engine 20.10.24" in verbose, verbose


def test_json_names_every_check_with_status() -> None:
    document = json.loads(json.dumps(as_json(REPORT)))
    assert document["ok"] is False
    assert document["summary"] == {"pass": 1, "warn": 1, "fail": 2, "total": 4}, document
    assert [(c["id"], c["host"], c["status"]) for c in document["checks"]] == [
        ("host.docker", "sandbox", "pass"),
        ("conference.bridges", "sandbox", "fail"),
        ("media.advertise_ips", "sandbox", "warn"),
        ("conference.jvb_health", "jvb1", "fail"),
    ], document["checks"]
    assert set(document["checks"][0]) == {
        "id",
        "host",
        "role",
        "description",
        "status",
        "observed",
        "hint",
        "attempts",
        "duration_s",
    }


# The Ant/Jenkins JUnit schema (junit-10): allowed attributes and children per element.
ALLOWED = {
    "testsuites": ({"name", "time", "tests", "failures", "disabled", "errors"}, {"testsuite"}),
    "testsuite": (
        {
            "name",
            "tests",
            "failures",
            "errors",
            "time",
            "disabled",
            "skipped",
            "timestamp",
            "hostname",
            "id",
            "package",
        },
        {"properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), {"property"}),
    "property": ({"name", "value"}, set()),
    "testcase": (
        {"name", "assertions", "time", "classname", "status"},
        {"skipped", "error", "failure", "system-out", "system-err"},
    ),
    "failure": ({"type", "message"}, set()),
    "system-out": (set(), set()),
}
REQUIRED = {
    "testsuite": {"name", "tests", "failures", "errors", "time"},
    "testcase": {"name", "classname", "time"},
    "property": {"name", "value"},
}


def validate_junit(text: str) -> ElementTree.Element:
    """Check every element against ALLOWED/REQUIRED and the counters against the cases."""
    root = ElementTree.fromstring(text)
    assert root.tag == "testsuites", root.tag
    for element in root.iter():
        attributes, children = ALLOWED[element.tag]
        assert set(element.attrib) <= attributes, (element.tag, element.attrib)
        assert REQUIRED.get(element.tag, set()) <= set(element.attrib), (
            element.tag,
            element.attrib,
        )
        for child in element:
            assert child.tag in children, (element.tag, child.tag)
    for suite in [root, *root.findall("testsuite")]:
        cases = list(suite.iter("testcase"))
        assert int(suite.get("tests", "-1")) == len(cases), suite.attrib
        failures = sum(1 for case in cases if case.find("failure") is not None)
        assert int(suite.get("failures", "-1")) == failures, suite.attrib
        float(suite.get("time", "x"))
    for suite in root.findall("testsuite"):
        # junit-10 timestamps are xs:dateTime without a zone.
        assert len(suite.get("timestamp", "")) == 19, suite.get("timestamp")
    return root


def test_junit_validates_and_maps_statuses(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "verify.xml"
    write_junit(REPORT, path)
    root = validate_junit(path.read_text(encoding="utf-8"))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["verify.sandbox.sandbox", "verify.sandbox.jvb1"]
    cases = {c.get("name"): c for c in root.iter("testcase")}
    bridges = cases["conference.bridges"].find("failure")
    assert bridges is not None
    assert bridges.get("message") == "operational_bridge_count 0 (bridge_count 0), expected >= 1"
    assert "hint: JVB_AUTH_PASSWORD" in (bridges.text or ""), bridges.text
    warning = cases["media.advertise_ips"]
    assert warning.find("failure") is None
    assert (warning.findtext("system-out") or "").startswith("WARN: JVB_ADVERTISE_IPS"), warning
    assert cases["host.docker"].get("classname") == "sandbox.sandbox.host"


def test_junit_survives_control_characters() -> None:
    report = VerifyReport(
        "sandbox", None, (outcome("web.root", "fail", "body \x00\x1b[31m oops"),), 1.0, 5.0, ""
    )
    root = validate_junit(
        junit_xml(report).replace('timestamp=""', 'timestamp="2026-01-01T00:00:00"')
    )
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and "\x00" not in (failure.get("message") or ""), failure


@pytest.mark.parametrize("render", ["human", "json", "junit"])
def test_no_secret_survives_any_output(render: str) -> None:
    leaky = VerifyReport(
        "sandbox",
        "stable-11146-2",
        (outcome("signalling.bosh", "fail", f"POST ?password={SECRET} answered 500", SECRET),),
        1.0,
        5.0,
        "2026-11-26T06:30:00+00:00",
    )
    clean = scrubbed(leaky, {"JVB_AUTH_PASSWORD": SECRET, "PUBLIC_URL": "https://x"})
    text = {
        "human": lambda: "\n".join(human_lines(clean)),
        "json": lambda: json.dumps(as_json(clean)),
        "junit": lambda: junit_xml(clean),
    }[render]()
    assert SECRET not in text, text
    assert "********" in text, text


def test_empty_report_is_just_the_summary() -> None:
    empty = VerifyReport("sandbox", None, (), 0.0, 1.0, "")
    assert human_lines(empty) == ["verify sandbox: 0 passed, 0 failed in 0.0s"]
    assert empty.ok
