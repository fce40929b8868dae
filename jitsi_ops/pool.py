"""A bounded pool for the phases that only read or prepare (preflight, plan, backup): every host
at once, at most `parallel` at a time, each on its own SSH connection.

Every job runs to its end (a host's phase is not cut in the middle); then the first failure, in
host order, is raised, so a slow or unreachable host fails the run before anything changes
anywhere. The progress callback gets one line per finished host: `<what> N/M hosts`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def on_all(
    items: Sequence[T],
    job: Callable[[T], R],
    *,
    parallel: int,
    what: str,
    progress: Callable[[str], None] | None = None,
) -> list[R]:
    """job(item) for every item, `parallel` at a time; results in item order. Raises the first
    item's error (in item order) once every job has ended."""
    if not items:
        return []
    done = 0
    lock = threading.Lock()

    def counted(item: T) -> R:
        nonlocal done
        try:
            return job(item)
        finally:
            with lock:
                done += 1
                if progress:
                    progress(f"{what} {done}/{len(items)} hosts")

    if len(items) == 1 or parallel <= 1:
        return [counted(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(parallel, len(items))) as executor:
        futures = [executor.submit(counted, item) for item in items]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]
