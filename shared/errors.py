"""One clear message and a non-zero exit for bad input.

Entry points raise `UserError` for anything the user can fix (a missing folder, a rate out of range,
a checkpoint of the wrong model); `main_guard` prints it as a single line and exits with status 2.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user. The message names the thing and what was expected."""


class MalformedError(UserError):
    """A data file (run record, reported table, checkpoint) does not have the expected form."""


class WriteFailed(UserError):
    """An output could not be written (read-only folder, no space left, a file where a folder should be)."""


EXIT_USER_ERROR = 2


def main_guard(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap an entry point so that a UserError becomes `error: <message>` and exit status 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as Unix tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that the exit-time flush does not fail again
            return 141

    return wrapped


def check_range(name: str, value: float, low: float, high: float, *, low_open=False, high_open=False):
    """Raise UserError unless low <= value <= high (open ends where asked). NaN and infinities are
    refused whatever the bounds (every comparison with NaN is false, so a plain range test lets it in)."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    try:
        finite = math.isfinite(value)
    except TypeError:
        raise UserError(f"{name} must be a number in {left}{low}, {high}{right}, got {value!r}") from None
    if not finite:
        raise UserError(f"{name} must be a finite number in {left}{low}, {high}{right}, got {value}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        raise UserError(f"{name} must be in {left}{low}, {high}{right}, got {value}")
    return value


def check_count(name: str, value: int, low: int = 1, high: int | None = None) -> int:
    """Raise UserError unless `value` is a whole number with low <= value (<= high when given)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be a whole number >= {low}, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise UserError(f"{name} must be {bound}, got {value}")
    return value
