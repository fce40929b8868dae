"""TaskOutput: plain lines off a terminal, a transient live line on one, silence in JSON mode."""

from __future__ import annotations

import io
import re

import pytest

from jitsi_ops.deploy import PhaseResult
from jitsi_ops.output import (
    TaskOutput,
    counter,
    elapsed_text,
    phase_line,
    strip_terminal_codes,
    wants_live,
)

PULL = "pulling 2/7 127.0.0.1:5000/jitsi/web:stable-11146-2"
_CONTROL = re.compile(r"\x1b\[(\??)(\d*)([A-Za-z])|\r|\n|[^\x1b\r\n]")


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


class Screen:
    """A terminal that understands what rich's live display writes: CR, LF, erase-line,
    cursor-up, cursor show/hide; colours are ignored, anything else fails the test."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.cursor_visible = True

    def feed(self, output: str) -> None:
        for match in _CONTROL.finditer(output):
            token = match.group(0)
            if token == "\r":
                self.col = 0
            elif token == "\n":
                self.row, self.col = self.row + 1, 0
                self.rows.extend([] for _ in range(self.row + 1 - len(self.rows)))
            elif match.group(3):
                self.control(match.group(1), match.group(2), match.group(3), output)
            else:
                line = self.rows[self.row]
                line.extend(" " * (self.col + 1 - len(line)))
                line[self.col] = token
                self.col += 1

    def control(self, private: str, number: str, final: str, output: str) -> None:
        if private and number == "25":
            self.cursor_visible = final == "h"
        elif final == "K":
            self.rows[self.row] = []
        elif final == "A":
            self.row = max(self.row - int(number or "1"), 0)
        elif final != "m":
            raise AssertionError(f"unexpected control sequence {final!r} in {output!r}")


def screen(output: str) -> tuple[list[str], bool]:
    """What a terminal shows after `output`: its rows (trailing blanks cut) and whether the
    cursor is visible."""
    term = Screen()
    term.feed(output)
    shown = ["".join(r).rstrip() for r in term.rows]
    while shown and not shown[-1]:
        shown.pop()
    return shown, term.cursor_visible


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A known terminal for rich: TERM=dumb (common in CI) would switch its live display off."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_phase_line_is_the_deploy_timeline_format() -> None:
    assert phase_line(PhaseResult("pull", "ok", 73.25, "7 images")) == (
        "  pull           ok         73.2s  7 images"
    )
    assert phase_line(PhaseResult("gate", "failed", 120.0, "web.tls")) == (
        "  gate           FAILED    120.0s  web.tls"
    )
    assert phase_line(PhaseResult("migrate", "skipped", 0.0)) == (
        "  migrate        skipped     0.0s  "
    )


def test_plain_output_is_byte_for_byte_the_old_lines() -> None:
    stream = io.StringIO()
    with TaskOutput(stream) as out:
        assert not out.live
        out.line("deploy sandbox -> stable-11146-2 on sandbox")
        out.phase(PhaseResult("lock", "ok", 0.04, "held"))
        out.progress(PULL)
        out.progress("pulling 3/7 127.0.0.1:5000/jitsi/prosody:stable-11146-2")
        out.phase(PhaseResult("pull", "ok", 12.31, "7 images"))
        out.phase(PhaseResult("migrate", "skipped", 0.0))
        out.clear()  # nothing to clear off a terminal: prints nothing
    written = stream.getvalue()
    assert "\x1b" not in written and "\r" not in written, repr(written)
    assert written == (
        "deploy sandbox -> stable-11146-2 on sandbox\n"
        "  lock           ok          0.0s  held\n"
        f"  ... {PULL}\n"
        "  ... pulling 3/7 127.0.0.1:5000/jitsi/prosody:stable-11146-2\n"
        "  pull           ok         12.3s  7 images\n"
        "  migrate        skipped     0.0s  \n"
    ), written


def test_a_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    stream = TtyStringIO()
    with TaskOutput(stream) as out:
        out.progress("backup: archiving 12 entries")
    assert not out.live
    assert stream.getvalue() == "  ... backup: archiving 12 entries\n", repr(stream.getvalue())


def test_wants_live_only_for_a_capable_terminal() -> None:
    assert wants_live(TtyStringIO(), {"TERM": "xterm-256color"})
    assert wants_live(TtyStringIO(), {})  # no TERM says nothing against it
    assert not wants_live(TtyStringIO(), {"TERM": "dumb"})
    assert not wants_live(TtyStringIO(), {"TERM": "unknown"})
    assert not wants_live(io.StringIO(), {"TERM": "xterm"})
    closed = io.StringIO()
    closed.close()
    assert not wants_live(closed, {"TERM": "xterm"})


@pytest.mark.parametrize("live", [None, True, False])
def test_json_mode_prints_nothing(live: bool | None) -> None:
    stream = TtyStringIO()
    with TaskOutput(stream, json=True, live=live) as out:
        out.line("deploy x")
        out.progress(PULL)
        out.phase(PHASE_PULL)
        out.clear()
    assert out.quiet and not out.live
    assert stream.getvalue() == "", repr(stream.getvalue())


PHASE_PULL = PhaseResult("pull", "ok", 12.31, "7 images")


@pytest.mark.usefixtures("terminal")
def test_terminal_shows_a_live_line_that_the_phase_line_replaces() -> None:
    stream = io.StringIO()
    clock = Clock()
    with TaskOutput(stream, live=True, clock=clock) as out:
        assert out.live
        out.line("deploy sandbox -> stable-11146-2 on sandbox")
        clock.now += 3
        out.progress(PULL)
        during, cursor_visible = screen(stream.getvalue())
        assert during[0] == "deploy sandbox -> stable-11146-2 on sandbox", during
        assert len(during) == 2 and PULL in during[1], during
        assert "━" in during[1], f"no bar for the 2/7 counter: {during[1]!r}"
        assert during[1].endswith(" 3s"), f"elapsed time of the phase missing: {during[1]!r}"
        assert not cursor_visible

        out.line("warning: web is restarting")  # goes above; the live line stays
        during, _ = screen(stream.getvalue())
        assert during[1] == "warning: web is restarting" and PULL in during[2], during

        clock.now += 70
        out.phase(PHASE_PULL)
        clock.now += 2
        out.progress("pre-apply: 3 migrations")  # the next phase's clock started at the phase line
        during, _ = screen(stream.getvalue())
        assert during[2] == "  pull           ok         12.3s  7 images", during
        assert during[3].endswith(" 2s") and "━" not in during[3], during
    after, cursor_visible = screen(stream.getvalue())
    assert after == [
        "deploy sandbox -> stable-11146-2 on sandbox",
        "warning: web is restarting",
        "  pull           ok         12.3s  7 images",
    ], after
    assert cursor_visible
    assert "\x1b[" in stream.getvalue()  # it really was the live rendering


@pytest.mark.usefixtures("terminal")
def test_clear_removes_the_live_line_until_the_next_progress() -> None:
    stream = io.StringIO()
    with TaskOutput(stream, live=True) as out:
        out.progress("downloading backup sandbox-1")
        out.clear()
        shown, cursor_visible = screen(stream.getvalue())
        assert shown == [] and cursor_visible, shown
        out.line("restore sandbox-1 on sandbox:")
        out.progress("stopping project jitsi")
        shown, _ = screen(stream.getvalue())
        assert shown[0] == "restore sandbox-1 on sandbox:" and "stopping project" in shown[1], shown
    assert screen(stream.getvalue()) == (["restore sandbox-1 on sandbox:"], True)


@pytest.mark.usefixtures("terminal")
@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_the_terminal_is_left_clean_on_an_exception(error: BaseException) -> None:
    stream = io.StringIO()

    def task() -> None:
        with TaskOutput(stream, live=True) as out:
            out.line("deploy sandbox")
            out.progress(PULL)
            raise error

    with pytest.raises(type(error)):
        task()
    shown, cursor_visible = screen(stream.getvalue())
    assert shown == ["deploy sandbox"], f"live line left behind: {shown}"
    assert cursor_visible, "cursor left hidden"


@pytest.mark.usefixtures("terminal")
def test_messages_are_not_markup_and_long_ones_are_cut_to_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    stream = io.StringIO()
    with TaskOutput(stream, live=True) as out:
        out.line("[bold]literal[/bold] 1.2.3.4")
        out.progress("migrate: docker run --rm -v /srv/x:/x [red]alpine[/red]\nsh -c 'true'")
        shown, _ = screen(stream.getvalue())
        assert shown[0] == "[bold]literal[/bold] 1.2.3.4", shown
        assert len(shown) == 2 and shown[1].endswith(" 0s") and "…" in shown[1], shown
        assert len(shown[1]) <= 40, shown
    assert "\x1b[1m" not in stream.getvalue()  # "[bold]" was not taken as a style


@pytest.mark.usefixtures("terminal")
def test_no_color_keeps_the_live_line_without_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    stream = io.StringIO()
    with TaskOutput(stream, live=True) as out:
        out.progress(PULL)
        out.phase(PhaseResult("pull", "failed", 1.0, "web: manifest unknown"))
    written = stream.getvalue()
    # Bold and dim are allowed (no-color.org is about colour); no colour code may appear.
    attributes = {p for m in re.findall(r"\x1b\[([0-9;]*)m", written) for p in m.split(";")}
    assert attributes <= {"0", "1", "2"}, repr(written)
    assert PULL in written
    assert screen(written) == (["  pull           FAILED      1.0s  web: manifest unknown"], True)


def test_counter_reads_only_a_standalone_n_of_m() -> None:
    assert counter(PULL) == (2, 7)
    assert counter("pushing 127.0.0.1:5000/jitsi/web") is None
    assert counter("copied 1/2/3 files") is None
    assert counter("step 9/7") is None and counter("step 0/0") is None
    assert counter("round 3: 0/4 settled, 2/4 left") == (0, 4)


def test_elapsed_text() -> None:
    assert [elapsed_text(s) for s in (0, 7.9, 65, 3599, 3725)] == [
        "0s",
        "7s",
        "1m05s",
        "59m59s",
        "1h02m",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b[2Kweb-1  | up", "web-1  | up"),
        ("\x1b[1;32mok\x1b[0m \x1b[38;5;208mwarn\x1b[m", "ok warn"),
        ("\x1b[?25lhidden cursor\x1b[?25h", "hidden cursor"),
        ("\x1b[3A\x1b[10Gmoved", "moved"),
        ("\x1b]0;window title\x07text", "text"),
        ("\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x9b2Keight-bit", "eight-bit"),
        ("\x1b7saved\x1b8", "saved"),
        ("\x1b]unterminated\nnext line", "unterminated\nnext line"),
        ("tabs\tand\r\nline ends stay", "tabs\tand\r\nline ends stay"),
        ("[2K brackets without ESC stay", "[2K brackets without ESC stay"),
    ],
)
def test_strip_terminal_codes(text: str, expected: str) -> None:
    assert strip_terminal_codes(text) == expected, repr(strip_terminal_codes(text))
