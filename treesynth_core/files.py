"""Files the core writes: checked up front, written atomically.

``atomic_write`` writes to a temporary file in the target's folder, flushes it to disk and renames it over
the target (``os.replace``), so a reader or a crash sees either the old file whole or the new one whole,
never a truncated mix. On any error the temporary file is removed and the previous file is untouched.
A process killed mid-write (SIGKILL) can leave a ``.<name>.*.tmp`` file beside the target; the target is
intact.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import ConfigError


def check_target(path: str | Path, what: str = "output file") -> Path:
    """Refuse a path that cannot be written as a file: a directory, a missing or unwritable folder."""
    target = Path(path)
    if str(path).strip() == "":
        raise ConfigError(f"the {what} path is empty", "pass a file name")
    if target.is_dir():
        raise ConfigError(f"the {what} {path} is a directory", "pass a file name inside it")
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(f"the folder of the {what} {path} does not exist", "create the folder first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"the folder of the {what} {path} is not writable", "choose another folder")
    if target.exists() and not target.is_file():
        raise ConfigError(f"the {what} {path} is not a regular file", "pass a file name")
    return target


@contextmanager
def atomic_file(path: str | Path, what: str = "output file") -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    The new file gets the usual permissions (0666 less the umask), or the old file's when it replaces one.
    """
    target = check_target(path, what)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} {path}: {exc.strerror}", "choose another path") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            if target.is_file():
                os.fchmod(handle.fileno(), target.stat().st_mode & 0o7777)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with _quiet():
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write the {what} {path}: {exc.strerror or exc}",
                              "check the disk space and the folder's permissions") from None
        raise
    _sync_folder(target.parent)


def atomic_write(path: str | Path, data: bytes, what: str = "output file") -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_file(path, what) as handle:
        handle.write(data)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem lets a folder be opened)."""
    with _quiet():
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def _quiet():
    try:
        yield
    except OSError:
        pass
