"""`invoke verify`: the post-deploy verification suite that proves people can meet.

Host-side checks run through testinfra over the environment's own SSH connection; protocol
probes talk to PUBLIC_URL from the operator's side with explicit TLS trust, and to jicofo/jvb
REST through the SSH connection (those ports listen on the host's 127.0.0.1 only).

    report = verify(env, runners)        # jitsi_ops.verify.suite.verify
    print("\\n".join(human_lines(report)))
"""

from jitsi_ops.verify.model import Check, CheckResult, Outcome, Status, VerifyReport
from jitsi_ops.verify.report import as_json, human_lines, junit_xml, write_junit
from jitsi_ops.verify.suite import select, verify

__all__ = [
    "Check",
    "CheckResult",
    "Outcome",
    "Status",
    "VerifyReport",
    "as_json",
    "human_lines",
    "junit_xml",
    "select",
    "verify",
    "write_junit",
]
