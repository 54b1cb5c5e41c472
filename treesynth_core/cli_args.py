"""The command line's argument types (a setting's range, a count, UTF-8 text, fields...) and the option helpers
every command's parser uses (--db/--project, a setting's help line)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from pydantic import ValidationError

from .edits import SAMPLE_STATUSES
from .errors import ConfigError
from .outcome import EXIT_USER_ERROR
from .spec import Settings, bounds, parse_fields, parse_root_split


# ----------------------------------------------------------------------------- argument types
# Each refuses a bad value while the arguments are parsed: before any file is opened or any call is paid for.


def _number(text: str, kind: type, low, high):
    try:
        value = kind(text)
    except ValueError:
        value = None
    in_range = value is not None and math.isfinite(value) and (low is None or value >= low) and (
        high is None or value <= high)
    if not in_range:
        what = "a whole number" if kind is int else "a number"
        show = (lambda v: f"{int(v)}") if kind is int else (lambda v: f"{v:g}")  # never 2.14748e+09
        span = f"from {show(low)} to {show(high)}" if high is not None else f"of at least {show(low)}"
        raise argparse.ArgumentTypeError(f"must be {what} {span} (got {text!r})")
    return value


def setting(name: str, low=None):
    """The argument type of a project setting: its range is the setting's (spec.Settings), optionally with a
    higher floor for this command."""
    floor, high = bounds(name)
    low = floor if low is None else max(low, floor)
    kind = int if Settings.model_fields[name].annotation is int else float
    return lambda text: _number(text, kind, low, high)


def count(low: int, high: int):
    return lambda text: _number(text, int, low, high)


def text(value: str) -> str:
    """Text that can be stored and written: refuses bytes that are not UTF-8 (lone surrogates in argv)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("is not valid UTF-8 text") from None
    return value


def statuses(value: str) -> list[str]:
    wanted = [s.strip() for s in text(value).split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SAMPLE_STATUSES]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"unknown sample status {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"use one or more of {', '.join(SAMPLE_STATUSES)}, separated by commas")
    return wanted


def fields(value: str):
    try:
        parsed = parse_fields(text(value))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(_first_error(exc)) from None
    if not parsed:
        raise argparse.ArgumentTypeError("names no field; e.g. 'question,answer' or 'question: the problem, answer'")
    names = [f.name for f in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"field names must be unique; {', '.join(twice)} appears more than once")
    return parsed


def root_split(value: str):
    try:
        return parse_root_split(text(value))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(_first_error(exc)) from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return first["msg"].removeprefix("Value error, ")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the error and where to read the help), exit code 2."""

    def error(self, message: str):
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USER_ERROR)


# ----------------------------------------------------------------------------- option helpers


SAVED = "the project's setting; a value given is saved in the project"
THIS_RUN = "the project's setting; a value given is for this run only"


def setting_help(name: str, what: str, *, low=None, default: str | None = None) -> str:
    """An option's help: what it sets, its range (spec.bounds, as its argument type checks) and its default
    (``default``; None: the Settings field's default, for init)."""
    floor, high = bounds(name)
    floor = floor if low is None else max(low, floor)
    show = (lambda v: f"{int(v)}") if Settings.model_fields[name].annotation is int else (lambda v: f"{v:g}")
    return f"{what}; {show(floor)} to {show(high)} (default: {default or Settings.model_fields[name].default})"


def db_options(c: argparse.ArgumentParser, *, project: bool = True, db_help: str = "the project database file",
               project_help: str = "project id (needed when the file holds several)") -> None:
    """--db (required) and, with ``project``, --project: the file and the project in it, as every command takes
    them."""
    c.add_argument("--db", required=True, help=db_help)
    if project:
        c.add_argument("--project", type=count(1, 2**62), help=project_help)


def existing_db(path: str) -> None:
    """Refuse, before it is opened, a --db that a command working on an existing project cannot use: an empty
    option, a file that does not exist, or an empty file (opening it would write the whole schema into it, only
    to find no project). A folder is refused when the Store opens it."""
    if not path.strip():
        raise ConfigError("--db is empty", "pass the project database file, e.g. --db my.db")
    target = Path(path)
    if not target.exists():
        raise ConfigError(f"{path} does not exist", "create it with `python -m treesynth_core init --db ...`")
    if target.is_file() and target.stat().st_size == 0:
        raise ConfigError(f"{path} is an empty file, not a TreeSynth database",
                          "pass the project database file, or create a project in it with `python -m treesynth_core "
                          "init --db ...`")
