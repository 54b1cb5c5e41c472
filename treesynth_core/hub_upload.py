"""The push's plumbing around huggingface_hub's client: the files handed over as open binary files whose reads
count the bytes sent (so the client takes the Hub's HTTP/LFS path, not Xet, and a job can show progress), a stop
that aborts an upload at its next read, and a quiet log. No store, no Streamlit: hub.push drives it."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path


class Stopped(Exception):
    """Raised inside the upload when the user asked to stop (from a read, or before the commit)."""


class Meter:
    """Bytes of the upload set sent, counted from reads of the files while an upload streams them to the connection
    (the highest offset read per file, so a retried request is not counted twice). Thread-safe enough: each file's
    high-water mark is written by the one thread reading it, and read as a whole int."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.sizes = [p.stat().st_size for p in paths]
        self.total = sum(self.sizes)
        self.high = [0] * len(paths)
        self.counting = False
        self.stop = threading.Event()

    def read_to(self, index: int, offset: int) -> None:
        if self.stop.is_set():
            raise Stopped()
        if self.counting and offset > self.high[index]:
            self.high[index] = min(offset, self.sizes[index])

    def landed(self) -> None:
        self.high = list(self.sizes)

    def sent(self) -> int:
        return sum(self.high)


class Reader(io.BufferedReader):
    """A file of the upload set opened for the client (a buffered binary file, so huggingface_hub takes its HTTP
    path, LFS for big files, not Xet); its reads report their offset to the meter."""

    def __init__(self, path: Path, meter: Meter, index: int):
        super().__init__(io.FileIO(path, "rb"))
        self._meter, self._index = meter, index

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._meter.read_to(self._index, self.tell())
        return data


def quiet_buffer_notice() -> None:
    """huggingface_hub warns on every push that buffered files are not sent through Xet: that is our choice (the
    HTTP/LFS path, which the tests exercise against a fake Hub), not news for the user. Drop that one message."""
    logger = logging.getLogger("huggingface_hub._commit_api")
    if not any(isinstance(f, DropXetNotice) for f in logger.filters):
        logger.addFilter(DropXetNotice())


class DropXetNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "not supported by Xet" not in record.getMessage()
