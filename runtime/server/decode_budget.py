"""A bound on the memory all concurrent image decodes of the server take together.

runtime.decode bounds one image (MAX_DECODED_BYTES) and tells, from its header alone, what
decoding it will take (`decoded_bytes`). The server decodes on one thread per core: without a
total, 64 cores could decode 64 of the largest images at once. Each decode reserves its bytes
here first and waits while the total would go over the budget; a reservation is released when
its image is preprocessed (down to a few hundred kB), so waiting is short and never circular.
Threads only (the batcher's preparing threads), no framework: tested on its own.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from runtime.decode import MAX_DECODED_BYTES

DEFAULT_DECODE_BUDGET = 2 * MAX_DECODED_BYTES  # two of the largest images at once, or many photos


class DecodeBudget:
    def __init__(self, limit_bytes: int = DEFAULT_DECODE_BUDGET) -> None:
        if limit_bytes < MAX_DECODED_BYTES:
            raise ValueError(f"a decode budget holds at least one image: {MAX_DECODED_BYTES:,} bytes")
        self.limit = limit_bytes
        self.in_use = 0
        self.peak = 0  # the most ever reserved at once (tests, metrics)
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` of the budget for the duration, waiting until that much is free."""
        if nbytes > MAX_DECODED_BYTES:  # runtime.decode refuses it before decoding: nothing to hold
            nbytes = 0
        nbytes = max(0, nbytes)
        with self._changed:
            self._changed.wait_for(lambda: self.in_use + nbytes <= self.limit)
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= nbytes
                self._changed.notify_all()
