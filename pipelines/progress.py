"""Stage progress with an ETA on stderr: a live bar on a terminal, plain lines elsewhere, nothing when quiet.

The library reports progress as one line of text per stage (``progress=``
callbacks); :class:`Stages` turns those lines into "stage 3 of 7, 1:12 elapsed,
about 2:30 left". The estimate uses how long each stage took the last time the
same job finished (kept in a small JSON file under ``var/logs``); on a first
run it extrapolates from the stages done so far. On a terminal the bar redraws
in place; when stderr is a file or a pipe (CI, cron, tests) every event is one
plain line with the same numbers, so logs stay readable.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

_active: Stages | None = None
_PART = re.compile(r"\bfold (\d+)/(\d+)")


def emit(message: str) -> None:
    """Send a library progress line to the running job's display (or print it when none is running).

    For code that cannot be handed a callback (a Prefect flow's ``say``).
    """
    if _active is not None:
        _active.feed(message)
    else:
        print(f"  {message}", file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Stages:
    """One job's known stages, their timing, and how it is shown.

    ``start(name)`` marks a stage begun (and the ones before it done);
    ``finish(name)`` marks it done; ``part(done, total)`` says how far the
    current stage is (backtest folds). Lines that are not stage names go to
    ``message``: warnings are always shown, other details only when not quiet.
    """

    def __init__(
        self,
        job: str,
        stages: Sequence[str],
        *,
        quiet: bool = False,
        title: str | None = None,
        history: Path | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
        now: Any = time.monotonic,
    ) -> None:
        self.job, self.stages, self.quiet = job, list(stages), quiet
        self.title = title or job.split("-")[0]
        self.history, self.stream, self._now = history, stream or sys.stderr, now
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self.expected = self._load_history()
        if self.expected:  # the stages the last finished run went through, in its order, then any new ones
            self.stages = [*self.expected, *(s for s in self.stages if s not in self.expected)]
        self.durations: dict[str, float] = {}
        self.current = -1
        self.fraction = 0.0
        self.detail = ""
        self.started = self._now()
        self.stage_started = self.started
        self._bar: Any = None
        self._task: Any = None

    # The display.

    def __enter__(self) -> Stages:
        global _active
        _active = self
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            stages = self

            class Eta(TextColumn):
                def render(self, task: Any) -> Any:
                    from rich.text import Text

                    left = stages.eta()
                    return Text("ETA ?" if left is None else f"about {clock(left)} left", style="progress.remaining")

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[step]}"),
                TimeElapsedColumn(),
                Eta(""),
                console=Console(file=self.stream),
                refresh_per_second=2,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=self._weight_total(), step="starting")
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        global _active
        _active = None
        if self._bar is not None:
            self._bar.stop()
        if kind is None:
            self._close_stage()
            self._save_history()

    def _show(self, what: str, done: int | None = None) -> None:
        """One event: redraw the bar, or print ``[stage/of elapsed, ETA] what`` (``done``: stage n finished)."""
        if self.quiet:
            return
        position = f"{done}/{len(self.stages)} done" if done else f"{max(self.current, 0) + 1}/{len(self.stages)}"
        if self._bar is not None:
            short = what if len(what) <= 48 else what[:47] + "…"
            self._bar.update(self._task, completed=self._weight_done(), step=f"{position} {short}")
            return
        left = self.eta()
        eta = "" if left is None else f", about {clock(left)} left"
        print(f"  [{position} {clock(self._now() - self.started)}{eta}] {what}", file=self.stream, flush=True)

    # Events.

    def start(self, name: str, detail: str = "") -> None:
        """Stage ``name`` begins; the stages before it are done."""
        index = self._index(name)
        if index is None:  # a step the list did not know (the library gained one) comes next; details do not
            if not name.strip() or ":" in name or name != name.lstrip():  # "quarantine: ...", "warning: ..."
                self.message(name)
                return
            index = max(self.current, 0) + (self.current >= 0)
            self.stages.insert(index, name.strip())
        if index != self.current:  # a stage the previous one's end already began keeps its start time
            self._close_stage()
            self.current, self.fraction, self.stage_started = index, 0.0, self._now()
        self.detail = detail or name
        self._show(self.detail)

    def finish(self, name: str, detail: str = "") -> None:
        """Stage ``name`` is done (for jobs that report a stage when it ends); the next one begins."""
        index = self._index(name)
        if index is None:
            self.message(name)
            return
        self.durations[name] = self._now() - self.stage_started
        self.current, self.fraction, self.stage_started = index + 1, 0.0, self._now()
        self._show(detail or name, done=index + 1)

    def part(self, done: int, total: int, detail: str = "") -> None:
        """The current stage is ``done`` of ``total`` parts through."""
        self.fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
        self._show(detail or self.detail)

    def feed(self, line: str) -> None:
        """A library's ``progress=`` line: a stage name starts it, "fold i/n" moves within it, else a message."""
        part = _PART.search(line)
        if part:
            self.part(int(part.group(1)) - 1, int(part.group(2)), line.strip())
        else:
            self.start(line)

    def message(self, line: str) -> None:
        """A line that is not a stage: a warning always shows (above the bar), a detail only when not quiet."""
        text = line.strip()
        if text.startswith(("warning", "error")):
            if self._bar is not None:
                self._bar.console.print(text, markup=False, highlight=False)
            else:
                print(text, file=self.stream, flush=True)
            return
        self._show(text)

    # Numbers.

    def _index(self, name: str) -> int | None:
        key = name.strip()
        return self.stages.index(key) if key in self.stages else None

    def _close_stage(self) -> None:
        """Record the running stage's time (the history keeps the stages a finished run went through, in order)."""
        if 0 <= self.current < len(self.stages) and self.stages[self.current] not in self.durations:
            self.durations[self.stages[self.current]] = self._now() - self.stage_started

    def _weights(self) -> list[float]:
        if self.expected:
            return [max(self.expected.get(s, 0.0), 0.01) for s in self.stages]
        return [1.0] * len(self.stages)

    def _weight_total(self) -> float:
        return sum(self._weights())

    def _weight_done(self) -> float:
        weights = self._weights()
        done = sum(weights[: max(self.current, 0)])
        if 0 <= self.current < len(weights):
            done += weights[self.current] * self.fraction
        return done

    def eta(self) -> float | None:
        """Seconds left: from the last finished run's stage times, else from the pace so far; None before any."""
        if self.current >= len(self.stages):
            return 0.0
        now = self._now()
        in_stage = now - self.stage_started
        current = max(self.current, 0)
        if self.expected:
            expected = self.expected.get(self.stages[current], 0.0)
            if self.fraction > 0:
                left_here = in_stage / self.fraction * (1 - self.fraction)
            else:
                left_here = max(expected - in_stage, 0.0)
            return left_here + sum(self.expected.get(s, 0.0) for s in self.stages[current + 1 :])
        done = current + self.fraction
        if done <= 0:
            return None
        return (now - self.started) / done * (len(self.stages) - done)

    # History of stage times (the next run's estimate).

    def _load_history(self) -> dict[str, float]:
        if self.history is None:
            return {}
        try:
            stored = json.loads(self.history.read_text(encoding="utf-8")).get(self.job, {})
            return {str(k): float(v) for k, v in stored.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}

    def _save_history(self) -> None:
        if self.history is None or not self.durations:
            return
        try:
            stored = json.loads(self.history.read_text(encoding="utf-8")) if self.history.is_file() else {}
            if not isinstance(stored, dict):
                stored = {}
            stored[self.job] = {k: round(v, 2) for k, v in self.durations.items()}
            self.history.parent.mkdir(parents=True, exist_ok=True)
            part = self.history.with_name(self.history.name + ".part")
            part.write_text(json.dumps(stored, indent=1) + "\n", encoding="utf-8")
            part.replace(self.history)
        except (OSError, ValueError):
            return  # an estimate for next time is not worth failing a finished job
