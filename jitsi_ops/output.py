"""The human output of one task run: a phase timeline plus progress of the running phase.

Long phases (image pulls, backups, verification rounds) report progress through plain
`Callable[[str], None]` callbacks. `TaskOutput` turns those messages into either

- a transient live line (spinner, message, a bar for "N/M" counters, elapsed time of the running
  phase) when the stream is an interactive terminal, which disappears when the phase's permanent
  timeline line is printed; or
- plain lines ("  ... message") when it is not (CI logs, pipes, pytest capture): no control code
  at all, so logs stay readable and greppable; or
- nothing at all in JSON mode, where the task prints its JSON report itself.

This module never adds content of its own beyond fixed labels: it prints only what it is given,
so it cannot leak a secret that the caller did not already pass in.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self, TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    # deploy imports a lot (and may one day import this module): the type is all we need.
    from jitsi_ops.deployreport import PhaseResult

PROGRESS_PREFIX: Final = "  ... "
"""What a progress message is prefixed with in plain (non-terminal) output."""

MARKS: Final[Mapping[str, str]] = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}
MARK_STYLES: Final[Mapping[str, str]] = {"ok": "green", "failed": "bold red", "skipped": "dim"}

# A counter is a token of its own ("pulling 2/7 ref"); digits inside a path or an image
# reference ("127.0.0.1:5000/jitsi") are not one.
_COUNTER = re.compile(r"(?<!\S)(\d+)/(\d+)(?!\S)")
# Terminals without cursor movement: rich would print every frame on a new line there.
_DUMB_TERMS: Final = frozenset({"dumb", "unknown"})
_BAR_WIDTH: Final = 20
# Often enough for a smooth spinner and a ticking clock, rarely enough to cost nothing over SSH.
_REFRESH_PER_SECOND: Final = 8


# Terminal control sequences (ECMA-48): CSI `ESC [ params intermediates final` (colours,
# `ESC[2K` line erase, cursor moves), OSC `ESC ] ... BEL|ST` (window titles, hyperlinks), the
# 8-bit CSI, and the two-byte escapes (`ESC 7`, `ESC c`, ...). An OSC must be terminated on
# its line: an unterminated one loses its two bytes only, never the log text after it.
_TERMINAL_CODES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)"
    r"|\x1b[ -/]*[0-~]"
)


def strip_terminal_codes(text: str) -> str:
    """`text` without terminal control sequences (for output that is not a terminal)."""
    return _TERMINAL_CODES.sub("", text)


def phase_line(result: PhaseResult) -> str:
    """One timeline line: name, ok/FAILED/skipped, seconds, detail (the deploy task's format)."""
    mark = MARKS[result.status]
    return f"  {result.name:<14} {mark:<8} {result.seconds:6.1f}s  {result.detail}"


def counter(message: str) -> tuple[int, int] | None:
    """The first "N/M" counter of a message (N <= M, M > 0), else None."""
    for match in _COUNTER.finditer(message):
        current, total = int(match.group(1)), int(match.group(2))
        if total > 0 and current <= total:
            return current, total
    return None


def wants_live(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `stream` is an interactive terminal that can redraw a line in place."""
    env = os.environ if environ is None else environ
    if env.get("TERM", "").lower() in _DUMB_TERMS:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream: certainly no terminal
        return False


def elapsed_text(seconds: float) -> str:
    """Compact elapsed time for the live line: "7s", "2m05s", "1h02m"."""
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@dataclass(frozen=True)
class _Status:
    """What the live line shows; replaced as a whole so the refresh thread never sees a mix."""

    message: str
    started: float


class _LiveLine:
    """The renderable of the live line; rich re-renders it on every refresh (spinner, clock)."""

    def __init__(self, status: Callable[[], _Status | None], clock: Callable[[], float]) -> None:
        self._status = status
        self._clock = clock
        self._spinner = Spinner("dots", style="cyan")

    def __rich__(self) -> RenderableType:
        status = self._status()
        if status is None:
            return Text("")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)  # spinner
        grid.add_column()  # message: the only column that gives way on a narrow terminal
        cells: list[RenderableType] = [
            self._spinner,
            # One line only: a multi-line message would make the live region jump.
            Text(" ".join(status.message.split()), no_wrap=True, overflow="ellipsis"),
        ]
        found = counter(status.message)
        if found is not None:
            current, total = found
            grid.add_column(no_wrap=True, width=_BAR_WIDTH)
            # "pulling 2/7" means the second item is under way: one of seven is done.
            cells.append(ProgressBar(total=total, completed=max(current - 1, 0), width=_BAR_WIDTH))
        grid.add_column(no_wrap=True, style="dim")
        cells.append(Text(elapsed_text(self._clock() - status.started)))
        grid.add_row(*cells)
        return grid


class TaskOutput:
    """Timeline, progress and plain lines of one task run on one stream.

    Use it as a context manager: leaving the block (normally, on an exception or on
    KeyboardInterrupt) removes any live line and shows the cursor again. `live` forces the
    terminal rendering on (tests, with a StringIO) or off; None detects it from the stream.
    The running phase's clock starts when the block is entered and restarts at every `phase()`.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        json: bool = False,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._json = json
        self._clock = clock
        self._phase_started = clock()
        self._status: _Status | None = None
        self._live: Live | None = None
        # Progress may come from a worker thread; the live region is started/stopped under this.
        self._lock = threading.RLock()
        self._console: Console | None = None
        if not json and (wants_live(stream) if live is None else live):
            self._console = Console(
                file=stream,
                force_terminal=True,
                force_interactive=True,
                # NO_COLOR (no-color.org) turns colours off but keeps the live line.
                no_color=os.environ.get("NO_COLOR", "") != "",
                # Messages are data, never markup: "[x]" stays literal, nothing is recoloured.
                markup=False,
                highlight=False,
                emoji=False,
            )
        self._renderable = _LiveLine(lambda: self._status, clock)

    @property
    def live(self) -> bool:
        """True when progress is shown as a live terminal line."""
        return self._console is not None

    @property
    def quiet(self) -> bool:
        """True in JSON mode: nothing is printed."""
        return self._json

    def __enter__(self) -> Self:
        self._phase_started = self._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Remove the live line, if any (idempotent)."""
        self.clear()
        self._status = None

    def phase(self, result: PhaseResult) -> None:
        """End the running phase: its live line goes, its permanent timeline line is printed."""
        with self._lock:
            self._status = None
            self.clear()
            if self._console is not None:
                text = Text(phase_line(result))
                mark = MARKS[result.status]
                start = len(f"  {result.name:<14} ")  # where phase_line puts the mark
                text.stylize(MARK_STYLES[result.status], start, start + len(mark))
                self._console.print(text, soft_wrap=True)
            elif not self._json:
                self._plain(phase_line(result))
            self._phase_started = self._clock()

    def progress(self, message: str) -> None:
        """Show what the running phase is doing now (a `Callable[[str], None]` callback)."""
        if self._json:
            return
        if self._console is None:
            self._plain(PROGRESS_PREFIX + message)
            return
        with self._lock:
            self._status = _Status(message, self._phase_started)
            if self._live is None:
                self._live = Live(
                    self._renderable,
                    console=self._console,
                    transient=True,
                    refresh_per_second=_REFRESH_PER_SECOND,
                    # Stray print()s to our own stream go above the live line instead of
                    # through it; the other stream is left alone (it keeps its destination).
                    redirect_stdout=self._stream is sys.stdout,
                    redirect_stderr=self._stream is sys.stderr,
                )
                self._live.start()
            # At once, not at the next tick: the new message is the news.
            self._live.refresh()

    def line(self, text: str = "") -> None:
        """Print a permanent line (above the live line, which stays)."""
        if self._json:
            return
        if self._console is None:
            self._plain(text)
        else:
            self._console.print(Text(text), soft_wrap=True)

    def clear(self) -> None:
        """Remove the live line now (e.g. before an input() prompt); progress() brings it back."""
        with self._lock:
            live, self._live = self._live, None
            if live is not None:
                live.stop()

    def _plain(self, text: str) -> None:
        self._stream.write(text + "\n")
        # Interleaves correctly with print() calls and subprocess output in a CI log.
        self._stream.flush()
