"""Progress of a sweep on stderr: one bar per stage and an overall bar with an ETA (rich.progress)."""

from __future__ import annotations

from edgecv.sweep.api import Progress

LABELS = {"build": "build (Keras)", "convert": "convert + verify", "profile": "static profile",
          "measure": "measure on host", "predict": "predict devices"}


class RichProgress(Progress):
    def __init__(self, console=None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._overall = None

    def start(self, stages: dict[str, int]) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._bar = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
                             transient=False, refresh_per_second=4)
        self._bar.start()
        self._overall = self._bar.add_task("[bold]overall", total=sum(stages.values()))
        for name, total in stages.items():
            self._tasks[name] = self._bar.add_task(LABELS.get(name, name), total=total)

    def advance(self, stage: str, n: int = 1) -> None:
        if self._bar is None or stage not in self._tasks or n <= 0:
            return
        self._bar.advance(self._tasks[stage], n)
        self._bar.advance(self._overall, n)

    def message(self, text: str) -> None:
        (self._bar.console if self._bar else self.console).print(text, soft_wrap=True, highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
