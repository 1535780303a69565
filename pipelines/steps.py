"""Running a job's named steps: announce each to the progress display, time it, wrap it as a Prefect task.

The daily ranking and the analysis reports run the same way, plainly in tests and ``--no-prefect``,
as tasks under their flow; one runner keeps the two from drifting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Step = Callable[[Callable[..., Any], str], Callable[..., Any]]
"""Turns a function and its step name into what runs it (the flows make it a Prefect task)."""


def step_runner(
    progress: Callable[[str], None] | None, step: Step | None
) -> tuple[Callable[..., Any], dict[str, float]]:
    """``run(name, function, *args)`` and the dict it fills with each step's seconds (rounded to 0.01)."""
    say = progress or (lambda _msg: None)
    wrap = step or (lambda function, _name: function)
    timings: dict[str, float] = {}

    def run(name: str, function: Callable[..., Any], *args: Any) -> Any:
        say(name)
        started = time.perf_counter()
        out = wrap(function, name)(*args)
        timings[name] = round(time.perf_counter() - started, 2)
        return out

    return run, timings
