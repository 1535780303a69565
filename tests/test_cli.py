"""The `yujing` command's first hour: fast help, arguments checked before loading, no traceback, a serve that
says "ready" only when it answers (issue 11)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

YUJING = Path(sys.executable).parent / "yujing"
HEAVY = ("pandas", "numpy", "lightgbm", "prefect", "mlflow", "onnxruntime", "sklearn", "uvicorn", "fastapi")
COMMANDS = (
    "simulate",
    "validate",
    "classify",
    "evaluate-text",
    "warn",
    "train",
    "rank",
    "schedule",
    "serve",
    "ready",
    "whatif",
    "models",
)
SUBCOMMANDS = [
    "keys add",
    "keys list",
    "keys revoke",
    "models list",
    "models history",
    "models promote",
    "models rollback",
]


def _run(args: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``yujing ARGS`` in a clean folder with its own home; the result and the CPU seconds it took.

    CPU time, not wall time: on a 2-core machine shared with other jobs the wall clock says more about the
    neighbours than about the command (an idle machine's wall time is about the CPU time).
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("YUJING_")}
    environ.update(YUJING_HOME=str(tmp_path / "var"), **env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [str(YUJING), *args], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _imported(stderr: str) -> set[str]:
    """Top-level modules a ``PYTHONPROFILEIMPORTTIME=1`` run imported."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_help_is_fast_and_loads_nothing_heavy(tmp_path: Path) -> None:
    started = time.perf_counter()
    done, seconds = _run(["--help"], tmp_path)
    assert time.perf_counter() - started < 5.0  # wall time, generous for a loaded machine (idle: about the CPU time)
    assert done.returncode == 0 and all(c in done.stdout for c in COMMANDS), done.stderr
    assert seconds < 1.0, f"yujing --help took {seconds:.2f} s of CPU"
    # every command's help, in one process: none imports the libraries its work needs
    script = (
        "import sys\nfrom typer.testing import CliRunner\nfrom pipelines.cli import app\n"
        f"for c in {list(COMMANDS) + SUBCOMMANDS!r}:\n"
        "    r = CliRunner().invoke(app, [*c.split(), '--help'])\n"
        "    assert r.exit_code == 0 and 'Usage:' in r.output, (c, r.output)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_allocator_setting_is_made_before_arrow_loads_and_a_users_own_wins() -> None:
    """``main`` sets allocator.PROCESS_ENV before any command imports pyarrow (mimalloc reads it when Arrow loads)."""
    script = (
        "import os, sys\nfrom pipelines import cli\nassert 'pyarrow' not in sys.modules\n"
        "sys.argv = ['yujing', 'validate', '--data', '/nonexistent-folder']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(*(os.environ.get(f'MIMALLOC_{k}') for k in ('LARGE_OS_PAGES', 'PURGE_DELAY')),"
        " 'pyarrow' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.split()[:2] == ["1", "-1"], out.stdout + out.stderr
    own = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "MIMALLOC_LARGE_OS_PAGES": "0"},
    )
    assert own.stdout.split()[:2] == ["0", "-1"], own.stdout + own.stderr


@pytest.mark.parametrize("prefect", ["--prefect", "--no-prefect"])
def test_a_bad_date_fails_before_anything_is_loaded(tmp_path: Path, prefect: str) -> None:
    done, seconds = _run(["rank", "--date", "2024-13-45", prefect], tmp_path, PYTHONPROFILEIMPORTTIME="1")
    assert done.returncode == 2
    assert "error: --date: '2024-13-45' is not a date; fix: give a calendar day as YYYY-MM-DD" in done.stderr
    assert "Traceback" not in done.stderr
    assert not set(HEAVY) & _imported(done.stderr)  # no pandas, no Prefect server: the check came first
    assert seconds < 1.5, f"{seconds:.2f} s of CPU"  # importtime's own bookkeeping included


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rank", "--data", "nowhere"], "--data: nowhere does not exist; fix: give an existing folder"),
        (["rank", "--bundle", "."], "--bundle: . is not an ONNX bundle (no manifest.json)"),
        (["rank", "--db", "warnings.db"], "--db: not a database URL"),
        (["warn", "--input", "x.jsonl", "--as-of", "soon", "--output", "-"], "--as-of: 'soon' is not a date"),
        (["simulate", "--start", "2023-02-30"], "--start: '2023-02-30' is not a date"),
        (["validate", "--encoding", "latin-9x"], "--encoding: 'latin-9x' is not an encoding"),
        (["classify", "--input", "missing.jsonl", "--output", "-"], "--input: missing.jsonl does not exist"),
        (["schedule", "--cron", "every morning"], "--cron: 'every morning' is not a cron of five fields"),
        (["train", "--out", "pyproject.toml"], "--out: pyproject.toml is a file"),
    ],
)
def test_every_argument_is_checked_first(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    done, _ = _run(args, tmp_path, PYTHONPROFILEIMPORTTIME="1")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == [f"error: {message}"] or errors[0].startswith(f"error: {message}"), errors
    assert not {"pandas", "prefect", "lightgbm"} & _imported(done.stderr)


def test_numbers_out_of_range_and_unknown_choices_are_usage_errors(tmp_path: Path) -> None:
    for args in (["simulate", "--persons", "10"], ["serve", "--port", "70000"], ["keys", "add", "--scope", "planet"]):
        done, _ = _run(args, tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
        assert "Invalid value" in done.stderr and args[-2] in done.stderr


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("sim_person = 5\nseed = 1\n", {}, "yujing.toml: unknown key 'sim_person'; fix: rename it to 'sim_persons'"),
        ("", {"YUJING_SIM_PERSONS": "abc"}, "env var YUJING_SIM_PERSONS: must be a whole number; fix: set a whole"),
        ("", {"YUJING_PROMOTION_METRIC": "f1"}, "env var YUJING_PROMOTION_METRIC: promotion_metric 'f1' cannot gate"),
        ('seed = "x"\n', {}, "yujing.toml, key 'seed': must be a whole number; fix: set a whole number (default"),
        ("seed = [\n", {}, "yujing.toml: not valid TOML"),
        ("", {"YUJING_CONFIG": "missing.toml"}, "YUJING_CONFIG names missing.toml, which is not a file; fix:"),
    ],
)
def test_a_settings_error_names_the_place_and_the_key_without_a_traceback(
    tmp_path: Path, toml: str, env: dict[str, str], expected: str
) -> None:
    if toml:
        (tmp_path / "yujing.toml").write_text(toml, encoding="utf-8")
    done, _ = _run(["simulate", "--persons", "200", "--days", "30", "--out", "city"], tmp_path, **env)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == "error: the settings cannot be used:" and len(lines) <= 3, lines
    assert expected in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and "pydantic" not in done.stderr
    assert not (tmp_path / "city").exists()


def test_an_unknown_env_var_is_named_with_its_likely_meaning(tmp_path: Path) -> None:
    done, _ = _run(["validate", "--data", "nowhere"], tmp_path, YUJING_SIM_PERSON="5")
    assert done.returncode == 2  # the argument is checked before the settings are even read
    done, _ = _run(["keys", "list"], tmp_path, YUJING_SIM_PERSON="5")
    assert done.returncode == 0
    assert "warning: env var YUJING_SIM_PERSON is not a setting and is ignored; did you mean YUJING_SIM_PERSONS?" in (
        done.stderr
    )


def test_an_unexpected_error_prints_one_line_and_keeps_the_traceback_in_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simulation.city
    from conf import get_settings

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("row 7 holds 110105199001011234")  # what an internal error may carry

    monkeypatch.setenv("YUJING_HOME", str(tmp_path / "var"))
    monkeypatch.setattr(simulation.city, "simulate_city", broken)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["simulate", "--persons", "200", "--days", "30", "--out", str(tmp_path / "c")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    logs = list((tmp_path / "var" / "logs").glob("error-*.log"))
    assert len(logs) == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: unexpected RuntimeError in `yujing simulate`; the traceback is in {logs[0]} "
        "(keep it inside the center: it may hold data)"
    )
    assert "110105199001011234" not in result.output and "Traceback" not in result.output
    kept = logs[0].read_text(encoding="utf-8")
    assert kept.startswith("yujing simulate\nTraceback") and "RuntimeError: row 7" in kept


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    args = ["simulate", "--persons", "3000", "--days", "60", "--seed", "5", "--out", str(tmp_path / "city")]
    quiet, _ = _run(["--quiet", *args], tmp_path)
    loud, _ = _run(args, tmp_path)
    assert loud.returncode == quiet.returncode == 0
    assert quiet.stdout == loud.stdout and "wrote 7 tables" in quiet.stdout
    assert quiet.stderr == ""
    progress = [line for line in loud.stderr.splitlines() if line.startswith("  [")]
    assert len(progress) == 8 and progress[0].startswith("  [1/8 done 0:0") and "population" in progress[0]
    assert all(" left] " in line for line in progress)  # the quiet run's stage times give every line an ETA
    assert progress[-1].startswith("  [8/8 ") and "writing the tables" in progress[-1]
    assert (tmp_path / "var" / "logs" / "stage-times.json").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_reports_a_port_in_use_within_a_second(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done, seconds = _run(["serve", "--port", str(port)], tmp_path, PYTHONPROFILEIMPORTTIME="1")
    assert done.returncode == 2
    assert f"error: port {port} in use: choose --port or stop the other process" in done.stderr
    assert not {"uvicorn", "pandas", "onnxruntime"} & _imported(done.stderr)
    assert seconds < 1.5, f"{seconds:.2f} s of CPU"


@pytest.mark.slow
def test_serve_says_ready_only_when_it_answers(tmp_path: Path) -> None:
    """The line "ready on" comes after the service answers, and `yujing ready` waits for the same thing."""
    import urllib.request

    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("YUJING_")}
    environ.update(YUJING_HOME=str(tmp_path / "var"), YUJING_RELOAD_INTERVAL_SECONDS="0")
    not_yet, _ = _run(["ready", "--port", str(port), "--timeout", "1"], tmp_path)
    assert not_yet.returncode == 1 and f"nothing ready on http://127.0.0.1:{port} within 1 s" in not_yet.stderr
    server = subprocess.Popen(
        [str(YUJING), "serve", "--port", str(port)], cwd=tmp_path, env=environ, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = server.stderr.readline() if server.stderr else ""
            if not line:
                break
            seen.append(line)
            if line.startswith("ready on"):
                break
        assert seen and seen[-1].startswith(f"ready on http://127.0.0.1:{port}"), seen
        assert "no API keys" in "".join(seen)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:  # answering now
            assert response.status == 200
        done, _ = _run(["ready", "--port", str(port), "--timeout", "5"], tmp_path)
        assert done.returncode == 0 and done.stdout.strip() == f"ready on http://127.0.0.1:{port}"
        second, seconds = _run(["serve", "--port", str(port)], tmp_path)
        assert second.returncode == 2 and f"port {port} in use" in second.stderr and seconds < 1.5
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_failure_inside_the_prefect_flow_reaches_the_user_as_one_line(tmp_path: Path) -> None:
    """Prefect logs the failed run's traceback itself; that goes to var/logs/prefect.log, not the terminal."""
    (tmp_path / "empty").mkdir()
    done, _ = _run(["rank", "--data", "empty"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"error: {tmp_path / 'empty'}: no addresses.parquet or addresses.csv; "
        "fix: export table 'addresses' into this folder"
    )
    assert "Traceback" not in done.stderr and "prefect" not in done.stderr.lower()
    assert "Traceback" in (tmp_path / "var" / "logs" / "prefect.log").read_text(encoding="utf-8")
