"""What every command-line program of Regard shares: one-line errors with exit 2, and checks made
before any work starts.

    from model import cli

    def main(argv=None) -> int:
        args = cli.Parser(prog="python evaluate.py", description=__doc__).parse_args(argv)
        return cli.run(lambda: work(args))      # CliError, CheckpointError, InputError... -> "error: ..."

A usage error, a missing file or an output that cannot be written is one ``error: ...`` line on
stderr and exit code 2, never a traceback or a page of usage text; outputs are checked before the
work that would fill them (``check_writable``), so a long evaluation is not run for nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import CheckpointError, InputError, one_line

if TYPE_CHECKING:
    import torch

    from .checkpoint import Checkpoint

# argparse takes "-inf" or "-1e-3" for an option unless it looks like a negative number to it; these do
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|inf(inity)?|nan)$", re.IGNORECASE)


class CliError(Exception):
    """Ends a command-line program with ``error: <message>`` on stderr and exit code 2."""


def fail(message: object) -> int:
    """Print ``error: message`` on one line; returns the exit code 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return 2


def warn(message: object) -> None:
    print(f"warning: {one_line(message)}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, and which reads ``-inf`` as a value."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> None:  # argparse's own usage errors
        self.exit(2, f"error: {one_line(message)} (see --help)\n")


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (``--limit -1`` is an error, not "all but one")."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {n}")
        return n
    parse.__name__ = "count"  # argparse names the type in its message
    return parse


def check_readable(path: str | Path, what: str) -> Path:
    """``path`` is an existing regular file (not a folder, /dev/zero or a FIFO); else ``CliError``."""
    path = Path(path)
    if not path.exists():
        raise CliError(f"{what} {path}: no such file")
    if not path.is_file():
        raise CliError(f"{what} {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise CliError(f"{what} {path}: not readable")
    return path


def check_writable(path: str | Path, what: str, make_parents: bool = False) -> Path:
    """``path`` can be written as a file: its folder exists and takes a new file, or the file itself can
    be opened for writing. Checked by opening it (an existing file is not truncated; a file made for the
    check is removed), because permission bits do not tell for root, /proc or a read-only mount.
    With ``make_parents`` a missing folder is fine if it can be made (the writer makes it)."""
    path = Path(path)
    if path.is_dir():
        raise CliError(f"{what} {path}: is a folder, give a file name")
    if not path.parent.is_dir():
        if make_parents:
            check_creatable_dir(path.parent, what)
            return path
        raise CliError(f"{what} {path}: folder {str(path.parent)!r} does not exist")
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise CliError(f"{what} {path}: cannot write ({exc.strerror or exc})") from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


def check_creatable_dir(path: str | Path, what: str) -> Path:
    """``path`` is a folder or can be made one: no file stands in the way and the nearest existing
    ancestor takes a new entry (tried with a temporary folder made and removed there, since permission
    bits do not tell for root, /proc or a read-only mount)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise CliError(f"{what} {path}: {str(p)!r} is a file, not a folder")
            try:
                os.rmdir(tempfile.mkdtemp(dir=p, prefix=".regard-check-"))
            except OSError as exc:
                raise CliError(f"{what} {path}: cannot write in {str(p)!r} ({exc.strerror or exc})") from None
            return path
    return path


def relay_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Print the library's own notices (``UserWarning``) as ``warning:`` lines; a ResourceWarning or a
    DeprecationWarning raised by garbage collection elsewhere in the process is not the user's business."""
    for w in caught:
        if issubclass(w.category, UserWarning):
            warn(w.message)


def device(name: str | None) -> "torch.device":
    """``--device`` as a torch device (auto, cpu, cuda, cuda:N), or ``CliError`` saying what to give."""
    from .device import pick_device

    try:
        return pick_device(name)
    except (ValueError, RuntimeError) as exc:  # torch.device("bogus") raises a RuntimeError
        reason = str(exc) if isinstance(exc, ValueError) else f"unknown device {name!r}"
        raise CliError(f"{reason}; use auto, cpu, cuda or cuda:N") from None


def load(path: str | Path, device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None) -> "Checkpoint":
    """The one way a program loads a model: a Regard file or a Marian folder (``load_model``), with the
    loader's notices printed as ``warning:`` lines; a ``CheckpointError`` is left to :func:`run`."""
    import torch

    from .load import load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ckpt = load_model(path, device=device, dtype=dtype or torch.float32)
    relay_warnings(caught)
    return ckpt


def run(work: Callable[[], int | None]) -> int:
    """Run a program's work; the library's refusals become one ``error:`` line and exit code 2."""
    try:
        return work() or 0
    except (CliError, CheckpointError, InputError, ValueError) as exc:  # ValueError: ConfigError and checks below
        return fail(exc)
    except BrokenPipeError:  # the reader went away (| head): nothing left to say
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file that vanished or filled a disk mid-run
        name = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{name}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130
