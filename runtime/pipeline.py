"""Preprocess images on worker threads while the model runs, in input order, within bounded memory.

Pillow and simplejpeg release the GIL while they decode and resize, so threads decode in parallel
(and beside the model's own threads, which run outside the GIL too); processes would have to send
every preprocessed array back through a pipe. `ordered_map` keeps at most `ahead` items submitted and
not yet taken by the caller: a folder of a thousand 12-megapixel photos never holds more than that
many decoded images, whatever the pace of the model.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_DEFAULT_WORKERS = 8  # decoding beyond this rarely pays: the model has to keep up


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decoding threads when none are asked for: one per core (at most MAX_DEFAULT_WORKERS).

    Measured on a 2-core machine (README, "Camera photos"): the model's threads and the decoders
    share the cores; while the model computes a batch, the decoders prepare the next one, and while
    they wait for it, the model has the cores to itself.
    """
    return max(1, min(available_cores(), MAX_DEFAULT_WORKERS))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int) -> Iterator[R]:
    """fn(item) for every item, in order, computed on `workers` threads at most `ahead` items ahead of
    the caller (workers 0: in the calling thread, one at a time, as a plain generator).

    An exception from fn is raised when its item's turn comes. Closing the iterator (the caller
    stops, or Ctrl-C reaches it) cancels what has not started and waits for the items being
    computed (one per worker) before returning.
    """
    if workers < 0 or ahead < 1:
        raise ValueError(f"workers must be >= 0 and ahead >= 1, got {workers} and {ahead}")
    if workers == 0:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alexnet-decode")
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
