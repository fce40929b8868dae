"""`web.custom_config`: the operator's customizations are part of what the web container serves.

The web image renders config.js and interface_config.js from its environment at every start and
appends `CONFIG/web/custom-config.js` / `custom-interface_config.js` when they exist (upstream's
`cat >>`). Since stable-11146 it first copies CONFIG/web to /run/web/config as uid 1000, so a
file that uid cannot read is silently left out; upstream #2291 reports custom files ignored
after that upgrade. A file created or edited after web started is not served until web starts
again. Either way the operator's settings are gone without an error anywhere.

The check reads the custom files on the main host through its Runner and the served files over
PUBLIC_URL (the same request web.config_js makes), and asks whether the custom text is contained
in the served text, ignoring whitespace (line endings, indentation, a missing final newline).
A custom file may hold tokens: reports name the file and its size, never its content.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Literal

from jitsi_ops.errors import OpsError
from jitsi_ops.settings import Host
from jitsi_ops.verify import derive
from jitsi_ops.verify.facts import Facts
from jitsi_ops.verify.model import CheckResult, failed, passed, warned
from jitsi_ops.versions import Layout

CHECK_ID = "web.custom_config"
DESCRIPTION = "CONFIG/web custom-config.js / custom-interface_config.js are in what web serves"
ISSUE_2291 = "https://github.com/jitsi/docker-jitsi-meet/issues/2291"


@dataclass(frozen=True)
class CustomFile:
    """An override file in CONFIG/web and the served file the web image appends it to."""

    name: str
    served: str


CUSTOM_FILES = (
    CustomFile("custom-config.js", "config.js"),
    CustomFile("custom-interface_config.js", "interface_config.js"),
)

Verdict = Literal["served", "not_served", "empty", "unreadable"]


@dataclass(frozen=True)
class Finding:
    """What the check found for one custom file that exists on the host (content never kept)."""

    file: CustomFile
    path: str
    size: int
    verdict: Verdict
    # Whether the container user can read it (None: not known, e.g. stat gave no answer).
    container_can_read: bool | None = None
    owner: str = ""

    def describe(self) -> str:
        """`name (N bytes) ...`: the observation for this file, without its content."""
        head = f"{self.file.name} ({self.size} bytes)"
        if self.verdict == "served":
            return f"{head} served in /{self.file.served}"
        if self.verdict == "empty":
            return f"{head} has no content to serve"
        if self.verdict == "unreadable":
            return f"{head} could not be read over SSH"
        return f"{head} is not in the served /{self.file.served}"


def squash(text: str) -> str:
    """`text` without any whitespace: CRLF/LF, indentation and line joins stop mattering."""
    return "".join(text.split())


def served_contains(served: str, custom: str) -> bool:
    """Whether the custom file's text is part of the served text (whitespace ignored)."""
    return squash(custom) in squash(served)


def readable_by(uid: int, gid: int, mode: int, who: int = derive.ROOTLESS_UID) -> bool:
    """Whether uid/gid `who` (the rootless containers' user) may read a file."""
    if who == 0:
        return True
    if uid == who:
        return bool(mode & 0o400)
    if gid == who:
        return bool(mode & 0o040)
    return bool(mode & 0o004)


def _restart_hint(project: str, host: str) -> str:
    return (
        "the web container appends CONFIG/web/custom-*.js to the files it serves only when it "
        "starts, so a file created or edited since then is not served: restart web "
        f"(`docker compose -p {project} restart web` on {host}); if it is still missing, this "
        f"release ignores it (upstream #2291, {ISSUE_2291}): move those settings into .env "
        "variables where they exist"
    )


def verdict(
    findings: list[Finding], web_dir: str, *, rootless: bool, project: str, host: str
) -> CheckResult:
    """The check's result over every custom file found (pure)."""
    if not findings:
        return passed(f"no {' or '.join(f.name for f in CUSTOM_FILES)} in {web_dir}")
    observed = "; ".join(f.describe() for f in findings)
    missing = [f for f in findings if f.verdict == "not_served"]
    if missing:
        blocked = [f for f in missing if rootless and f.container_can_read is False]
        if blocked:
            hint = (
                "since stable-11146 web runs as uid 1000 and copies CONFIG/web to /run/web/config "
                "at start, skipping what it cannot read: "
                + ", ".join(f"{f.path} is {f.owner}" for f in blocked)
                + "; make it readable (`chmod o+r` or `chown 1000:1000`), then restart web "
                f"(`docker compose -p {project} restart web` on {host})"
            )
        else:
            hint = _restart_hint(project, host)
        # The served files are rendered once at start: waiting cannot change this.
        return failed(observed, hint=hint, final=True)
    unreadable = [f for f in findings if f.verdict == "unreadable"]
    if unreadable:
        return warned(
            observed,
            hint="the deploy user cannot read "
            + ", ".join(f.path for f in unreadable)
            + ": the customization is unproven (use sudo = true or make the file readable)",
        )
    return passed(observed)


def stat_argv(paths: list[str]) -> list[str]:
    """`stat` of the custom files in the C locale, so "No such file" reads the same everywhere."""
    return ["env", "LC_ALL=C", "stat", "-L", "-c", derive.STAT_FORMAT, "--", *paths]


def stat_problems(stderr: str) -> list[str]:
    """stderr lines of that `stat` other than a missing file (which is the normal case)."""
    return [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and "No such file or directory" not in line
    ]


def _stat(facts: Facts, host: Host, paths: list[str]) -> tuple[dict[str, derive.StatInfo], str]:
    # A missing path only costs its line (stat exits 1 and reports the others); anything else
    # (a CONFIG/web the deploy user cannot search) must not pass as "no custom files".
    out = facts.runner(host).run(stat_argv(paths), check=False, timeout=facts.timeout())
    problems = stat_problems(out.stderr)
    if not out.ok and not problems and not out.stderr.strip():
        problems = [f"exit {out.exit_code}"]
    return derive.parse_stat(out.stdout), derive.excerpt("; ".join(problems))


def _finding(
    facts: Facts, host: Host, custom: CustomFile, path: str, info: derive.StatInfo
) -> Finding:
    owner = f"{info.uid}:{info.gid} mode {info.mode:04o}"
    can_read = readable_by(info.uid, info.gid, info.mode)
    try:
        data = facts.runner(host).get(path)
    except FileNotFoundError:
        raise OpsError(f"{path} vanished while verify read it") from None
    except (OSError, OpsError):
        return Finding(custom, path, 0, "unreadable", can_read, owner)
    text = data.decode("utf-8", errors="replace")
    if not squash(text):
        return Finding(custom, path, len(data), "empty", can_read, owner)
    served = facts.served_text(custom.served)
    contained = served_contains(served, text)
    return Finding(
        custom, path, len(data), "served" if contained else "not_served", can_read, owner
    )


def check_custom_config(facts: Facts, host: Host) -> CheckResult:
    """custom-config.js / custom-interface_config.js in CONFIG/web are part of what web serves."""
    web_dir = posixpath.join(facts.config_dir(host), "web")
    paths = {c: posixpath.join(web_dir, c.name) for c in CUSTOM_FILES}
    found, problem = _stat(facts, host, list(paths.values()))
    if problem:
        return warned(
            f"cannot tell whether {web_dir} holds custom files: `stat` said {problem}",
            hint="the deploy user must be able to read CONFIG/web (or set sudo = true)",
        )
    findings = [
        _finding(facts, host, custom, path, found[path])
        for custom, path in paths.items()
        if path in found and found[path].kind != "directory"
    ]
    return verdict(
        findings,
        web_dir,
        rootless=facts.env.layout is Layout.ROOTLESS,
        project=facts.env.deploy.project,
        host=host.label,
    )
