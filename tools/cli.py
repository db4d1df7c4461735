"""Command-line conventions shared by the terraform runners (validate/plan, e2e, deploy).

Every runner exits 2 with one `error: ...` line when it cannot run as asked, 130 when it is
interrupted, and treats SIGTERM (a cancelled CI job) like Ctrl-C, so terraform gets SIGINT,
stops gracefully and leaves no lock behind, and an emulator or temporary copy is cleaned up.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The command cannot run as asked; the message says what to do instead."""


def default_jobs() -> int:
    # The CPUs this process may use, which in a container can be fewer than the machine has.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1 (argparse names the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def add_jobs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=default_jobs(),
        help="stacks run at once (default: the CPUs this process may use)",
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_command(command: Callable[[], int]) -> int:
    """Run `command` (which returns the exit code) under the conventions above."""
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return command()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
