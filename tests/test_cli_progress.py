"""Stage progress: plain lines with an ETA when stderr is not a terminal, from the last run's stage times."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pipelines import progress
from pipelines.progress import Stages, clock


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_estimate_from_the_pace_then_from_the_last_run(tmp_path: Path) -> None:
    history = tmp_path / "times.json"
    t, out = Clock(), io.StringIO()
    with Stages("job", ["a", "b", "c"], history=history, stream=out, now=t) as stages:
        stages.start("a")
        t.now = 10
        stages.start("b")
        t.now = 20
        stages.part(1, 4, "fold 2/4")
        t.now = 40
        stages.start("c")
        t.now = 100
    assert out.getvalue().splitlines() == [
        "  [1/3 0:00] a",
        "  [2/3 0:10, about 0:20 left] b",  # one stage in 10 s: two more take 20 s
        "  [2/3 0:20, about 0:28 left] fold 2/4",  # 1.25 stages in 20 s: 1.75 more at 16 s each
        "  [3/3 0:40, about 0:20 left] c",  # two stages in 40 s: one more
    ]
    assert json.loads(history.read_text())["job"] == {"a": 10.0, "b": 30.0, "c": 60.0}

    t, out = Clock(), io.StringIO()
    with Stages("job", ["a", "b", "c"], history=history, stream=out, now=t) as stages:
        stages.start("a")
        t.now = 5
        stages.start("b")
        t.now = 20
        stages.part(1, 2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "  [1/3 0:00, about 1:40 left] a"  # 10 + 30 + 60 from the last run
    assert lines[1] == "  [2/3 0:05, about 1:30 left] b"
    assert lines[2] == "  [2/3 0:20, about 1:15 left] b"  # half of b in 15 s: 15 s more, then c's 60 s


def test_a_failed_run_keeps_the_old_times_and_quiet_shows_only_warnings(tmp_path: Path) -> None:
    history = tmp_path / "times.json"
    history.write_text(json.dumps({"job": {"a": 1.0, "b": 2.0}}), encoding="utf-8")
    out = io.StringIO()
    try:
        with Stages("job", ["a", "b"], history=history, stream=out, quiet=True) as stages:
            stages.start("a")
            progress.emit("warning: the rules rank today (no champion)")
            progress.emit("some detail")
            raise RuntimeError
    except RuntimeError:
        pass
    assert out.getvalue() == "warning: the rules rank today (no champion)\n"
    assert json.loads(history.read_text())["job"] == {"a": 1.0, "b": 2.0}
    assert progress._active is None


def test_finish_style_stages_and_unknown_lines() -> None:
    t, out = Clock(), io.StringIO()
    with Stages("sim", ["population", "records"], stream=out, now=t) as stages:
        t.now = 3
        stages.finish("population", "population  3,000 persons (3.0s)")
        t.now = 6
        stages.finish("records", "records  7 cases (3.0s)")
    assert out.getvalue().splitlines() == [
        "  [1/2 done 0:03, about 0:03 left] population  3,000 persons (3.0s)",
        "  [2/2 done 0:06, about 0:00 left] records  7 cases (3.0s)",
    ]
    assert clock(3725) == "1:02:05" and clock(-1) == "0:00"


def test_emit_feeds_library_lines_to_the_running_job() -> None:
    """What a Prefect flow's ``say`` sends: step names start stages, backtest fold lines move within one."""
    t, out = Clock(), io.StringIO()
    with Stages("train", ["load", "backtest and train escalation", "report"], stream=out, now=t):
        progress.emit("load")
        t.now = 10
        progress.emit("backtest and train escalation")
        t.now = 20
        progress.emit("  backtest fold 3/4: train on snapshots to 2024-06-01, test 2024-06-08..2024-07-01")
        progress.emit("warning: the rules rank today (no champion)")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["  [1/3 0:00] load", "  [2/3 0:10, about 0:20 left] backtest and train escalation"]
    assert lines[2].startswith("  [2/3 0:20, about 0:20 left] backtest fold 3/4: train on")  # 1.5 of 3 stages in 20 s
    assert lines[3] == "warning: the rules rank today (no champion)"


def test_a_step_the_list_does_not_know_comes_next_and_the_history_learns_it(tmp_path: Path) -> None:
    history = tmp_path / "times.json"
    t, out = Clock(), io.StringIO()
    with Stages("rank", ["resolve champion", "load", "publish"], history=history, stream=out, now=t) as stages:
        stages.start("load")  # "resolve champion" never reported (the flow resolves it as a task)
        t.now = 4
        stages.start("stage warnings in the database")  # a step the ranking gained
        stages.feed("quarantine: no row rejected (var/runs/latest/quarantine)")  # a detail, not a step
        t.now = 5
        stages.start("publish")
        t.now = 6
    assert stages.stages == ["resolve champion", "load", "stage warnings in the database", "publish"]
    assert out.getvalue().splitlines()[1].startswith("  [3/4 0:04")
    assert out.getvalue().splitlines()[2].startswith("  [3/4 0:04") and "quarantine: no row" in out.getvalue()
    stored = json.loads(history.read_text())["rank"]
    assert list(stored) == ["load", "stage warnings in the database", "publish"]  # the next run's list and times
    again = Stages("rank", ["resolve champion", "load", "publish"], history=history, stream=io.StringIO())
    assert again.stages == ["load", "stage warnings in the database", "publish", "resolve champion"]
