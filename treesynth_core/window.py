"""Adaptive concurrency for LLM calls: an AIMD window (additive increase, multiplicative decrease).

At most ``size`` requests are in flight. A request that meets a rate limit (HTTP 429) halves the window once
per congestion event (requests sent before the last cut do not cut again), down to 1; a run of ``2 x size``
successful requests since the last change grows it by one, up to ``max_size``. A request holds its slot
only while it talks to the server: a rate-limited call releases it before it waits out ``Retry-After``
(:func:`retry_after`), or an exponential backoff with jitter (:func:`backoff`) when the server gives none.

Urgent requests (the tree's steps: each unlocks a subtree, so they are the run's critical path) take a free
slot before any waiting request that is not urgent (a leaf's samples). A hedge (``hedge.py``) never waits: it takes a
slot free now, or one of a few spare ones (:meth:`Window.try_acquire`); a request never waits for a slot while
holding one.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time

MAX_WINDOW = 256  # upper bound for remote endpoints; well above any sensible starting concurrency
BACKOFF_BASE, BACKOFF_CAP = 1.0, 30.0  # seconds, for a 429 without Retry-After


class Window:
    def __init__(self, size: int, max_size: int = MAX_WINDOW):
        self.max_size = max(1, int(max_size))
        self.size = min(max(1, int(size)), self.max_size)
        self.in_flight = 0
        self.epoch = 0  # bumped by every cut; a slot remembers the epoch it was taken in
        self.cuts = 0
        self.grows = 0
        self.lowest = self.size
        self._run = 0  # successes since the last change of size
        self._urgent = 0  # urgent requests waiting for a slot
        self._cond = threading.Condition()

    def acquire(self, urgent: bool = False) -> int:
        """Wait for a free slot; returns the epoch to hand back to :meth:`release`. ``urgent``: before any
        request that is not."""
        with self._cond:
            if urgent:
                self._urgent += 1
                try:
                    while self.in_flight >= self.size:
                        self._cond.wait()
                finally:
                    self._urgent -= 1
                    if not self._urgent:
                        self._cond.notify_all()
            else:
                while self.in_flight >= self.size or self._urgent:
                    self._cond.wait()
            self.in_flight += 1
            return self.epoch

    def try_acquire(self, spare: int = 0) -> int | None:
        """A slot if one is free now, else None; ``spare``: that many requests beyond the size may be in flight
        (a hedge: rare, budgeted, and never made to wait behind the window it is there to overtake)."""
        with self._cond:
            if self.in_flight >= self.size + spare:
                return None
            self.in_flight += 1
            return self.epoch

    def release(self, epoch: int, *, ok: bool = False, rate_limited: bool = False) -> None:
        """Give the slot back; ``ok`` for a request that got an answer, ``rate_limited`` for a 429."""
        with self._cond:
            self.in_flight -= 1
            if rate_limited and epoch == self.epoch:
                self.size = max(1, self.size // 2)
                self.lowest = min(self.lowest, self.size)
                self.epoch += 1
                self.cuts += 1
                self._run = 0
            elif ok:
                self._run += 1
                if self._run >= 2 * self.size and self.size < self.max_size:
                    self.size += 1
                    self.grows += 1
                    self._run = 0
            self._cond.notify_all()

    def __repr__(self) -> str:
        return f"Window(size={self.size}, in_flight={self.in_flight}, max_size={self.max_size})"


def retry_after(response) -> float | None:
    """Seconds a 429 asks us to wait (``retry-after-ms``, or ``retry-after`` in seconds or as an HTTP date)."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) * scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter for the ``attempt``-th 429 without a usable Retry-After."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt, 16)) * random.uniform(0.5, 1.0)
