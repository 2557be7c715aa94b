"""Progress bars for long work (compiling a zoo, tuning), drawn by rich on stderr; silent when not enabled.

`progress(total, label)` (total None: open-ended, a count and the time so far) yields `advance(description=None)`:
one step done, and optionally a new label (tuning shows the kernels it has covered so far)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[..., None]


@contextmanager
def progress(total: int | None, label: str, enabled: bool = True) -> Iterator[Advance]:
    if not enabled:
        yield lambda description=None: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(description: str | None = None) -> None:
            if description:
                bar.update(task, description=description)
            bar.advance(task)
        yield advance
