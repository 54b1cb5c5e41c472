"""Stragglers: hedged requests, and the threads requests run on.

A request that has run far longer than requests of its kind usually take (a server that stalled, a lost
connection the SDK will only notice at its timeout) holds up everything that waits for it: in a build, the
node's whole subtree and its leaves. ``Hedger`` decides when such a request gets a second, identical copy:
the first usable answer wins and the other is abandoned (it ends on its own timeout; nothing waits for it).

- **When.** After ``factor`` x the median latency of the last answers of the same kind (the call's purpose:
  pivots, samples...), and never before ``floor`` seconds. With fewer than ``MIN_OBSERVED`` answers of that
  kind, every kind's answers together decide; with fewer than that in all, ``cold`` seconds (a fraction of the
  endpoint's timeout): the first calls of a run have no history to call them slow. The floor (2 s) keeps
  a fast endpoint's jitter, or a loaded client's, from passing for a straggler.
- **How many.** At most one copy per request, and at most ``allowance`` + ``share`` (5%) of the requests
  sent so far: a server that is slow for everyone gets a few copies, not twice the traffic.
- **Honest cost.** The caller logs the abandoned copy as a row of its own (it was sent, and a real endpoint
  bills its prompt), so the call log and the cost count both.

Only remote endpoints hedge: the bundled local server answers one request at a time, so a copy would queue
behind the very request it is meant to overtake.

``RequestThreads`` runs requests on reused daemon threads (a thread per request cost a thread start per call,
and an abandoned request must never keep the process alive at exit).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable

MIN_OBSERVED = 5  # answers of a kind before its own median counts
RECENT = 64  # answers per kind kept for the median


class Hedger:
    """When a request is a straggler, and whether the budget allows another copy. Thread-safe."""

    def __init__(self, *, factor: float = 3.0, floor: float = 2.0, cold: float = 10.0, share: float = 0.05,
                 allowance: int = 2):
        self.factor, self.floor, self.cold = factor, floor, cold
        self.share, self.allowance = share, allowance
        self.requests = 0  # requests sent, copies not included
        self.hedges = 0  # copies sent
        self.won = 0  # copies that answered first
        self._recent: dict[str, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=RECENT)
        self._lock = threading.Lock()

    def sent(self) -> None:
        with self._lock:
            self.requests += 1

    def observe(self, kind: str, seconds: float) -> None:
        """An answer of this kind came back after ``seconds``."""
        with self._lock:
            self._recent.setdefault(kind, deque(maxlen=RECENT)).append(seconds)
            self._all.append(seconds)

    def after(self, kind: str) -> float:
        """Seconds after which a request of this kind gets a copy."""
        with self._lock:
            seen = self._recent.get(kind)
            if seen is None or len(seen) < MIN_OBSERVED:
                seen = self._all
            if len(seen) < MIN_OBSERVED:
                return max(self.floor, self.cold)
            ordered = sorted(seen)
        return max(self.floor, self.factor * ordered[len(ordered) // 2])

    def take(self) -> bool:
        """Count a copy about to be sent; False when the budget is spent."""
        with self._lock:
            if self.hedges >= self.allowance + self.share * self.requests:
                return False
            self.hedges += 1
            return True

    def __repr__(self) -> str:
        return f"Hedger(requests={self.requests}, hedges={self.hedges}, won={self.won})"


class RequestThreads:
    """Run functions on reused daemon threads; a new thread only when none is idle. ``submit`` returns a
    ``concurrent.futures.Future`` (so ``concurrent.futures.wait`` races two of them)."""

    def __init__(self, name: str = "llm-request"):
        self.name = name
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0
        self._threads = 0
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        with self._lock:
            if self._idle and not self._closed:
                self._idle -= 1
            else:
                self._start()
        self._tasks.put((future, fn, args))
        return future

    def prestart(self, count: int) -> bool:
        """Start one idle thread if fewer than ``count`` exist; True when it did. A scheduler calls this while
        it waits for answers, so a burst of requests later (a tree's last level makes all its leaves at once)
        finds its threads made instead of starting them on its own critical path."""
        with self._lock:
            if self._closed or self._threads >= count:
                return False
            self._idle += 1
            self._start()
            return True

    def _start(self) -> None:
        """One more serving thread (the caller holds the lock)."""
        self._threads += 1
        threading.Thread(target=self._serve, name=f"{self.name}-{self._threads}", daemon=True).start()

    def close(self) -> None:
        """End the threads once they are idle (a request still running ends first)."""
        with self._lock:
            threads, self._closed = self._threads, True
        for _ in range(threads):
            self._tasks.put(None)

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():  # cancelled while queued
                with self._lock:
                    self._idle += 1
                continue
            result = error = None
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to whoever waits on the future
                error = exc
            with self._lock:  # idle before the waiter wakes: its next request reuses this thread
                self._idle += 1
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

