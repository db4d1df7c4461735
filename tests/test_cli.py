"""The command-line conventions every terraform runner shares (tools.cli)."""

from __future__ import annotations

import argparse
import os
import signal

import pytest

from tools import deploy, e2e
from tools import terraform as runner
from tools.cli import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    add_jobs_option,
    default_jobs,
    positive_int,
    run_command,
)


def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse() -> int:
        raise UsageError("no stack named dev-nope")

    assert run_command(refuse) == EXIT_USAGE == 2
    assert capsys.readouterr().err == "error: no stack named dev-nope\n"


def test_the_command_decides_the_exit_code_when_it_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_command(lambda: 0) == 0
    assert run_command(lambda: 1) == 1
    assert capsys.readouterr().err == ""


def test_sigterm_interrupts_like_ctrl_c_and_the_handler_is_restored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cleaned_up = []

    def cancelled_in_ci() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # let the handler run before going on
            return 0
        finally:
            cleaned_up.append(True)

    def outside(signum: int, frame: object) -> None:
        # Without run_command's own handler the signal lands here, not in pytest's default.
        raise AssertionError("SIGTERM reached the handler outside run_command")

    previous = signal.signal(signal.SIGTERM, outside)
    try:
        assert run_command(cancelled_in_ci) == EXIT_INTERRUPTED == 130
        assert cleaned_up == [True], "the command's cleanup did not run"
        assert "interrupted" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGTERM) is outside
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_other_errors_are_not_swallowed() -> None:
    def broken() -> int:
        raise RuntimeError("a defect, with its traceback")

    with pytest.raises(RuntimeError, match="a defect"):
        run_command(broken)


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("2", 2), ("16", 16)])
def test_a_positive_count_is_accepted(text: str, value: int) -> None:
    assert positive_int(text) == value


@pytest.mark.parametrize(
    ("text", "message"), [("0", "0: at least 1"), ("-3", "-3: at least 1"), ("x", "'x' is not")]
)
def test_a_count_below_one_or_not_a_number_is_refused(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        positive_int(text)


def test_jobs_defaults_to_the_cpus_this_process_may_use() -> None:
    parser = argparse.ArgumentParser()
    add_jobs_option(parser)
    assert parser.parse_args([]).jobs == default_jobs() >= 1
    assert default_jobs() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    "parse",
    [
        lambda jobs: runner.parse_arguments(["validate", "--jobs", jobs]),
        lambda jobs: runner.parse_arguments(["plan", "--jobs", jobs]),
        lambda jobs: e2e.parse_arguments(["--jobs", jobs]),
        lambda jobs: deploy.parse_arguments(["plan", "dev-data", "--jobs", jobs]),
        lambda jobs: deploy.parse_arguments(["apply", "--environment", "dev", "--jobs", jobs]),
    ],
    ids=["validate", "plan", "e2e", "deploy plan", "deploy apply"],
)
def test_every_runner_refuses_zero_jobs_and_takes_one(
    parse: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(parse)
    assert parse("1").jobs == 1
    with pytest.raises(SystemExit) as exit_:
        parse("0")
    assert exit_.value.code == 2
    assert "--jobs: 0: at least 1" in capsys.readouterr().err
