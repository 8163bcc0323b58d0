"""Dynamic batching: concurrent requests gathered into one model run, each answered with its rows.

    batcher = DynamicBatcher(predictor.predict_logits, max_batch_size=32, max_delay_s=0.005, max_queue=256)
    logits = await batcher.submit(images)  # (n, 3, H, W) float32 -> (n, classes), from some shared batch

A batch starts with the oldest waiting request and closes when it holds `max_batch_size` images or
`max_delay_s` has passed since that request arrived (so no request waits for a batch longer than
the delay, plus the run before it). A request never splits; one that would overflow the open batch
waits for the next one, and one larger than `max_batch_size` runs alone. At most `max_queue` images
wait (the batch being run is not counted): past that, `submit` raises QueueFull at once, which the
server answers with the protocol's "unavailable", so overload never grows memory or latency without
bound. Models run one batch at a time in one worker thread: the backend already uses every core.

asyncio and numpy only (no server framework), so it is tested on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from runtime.errors import DeployError


class QueueFull(DeployError):
    """More images are waiting than the queue allows: the server is overloaded, try again later."""


@dataclass
class _Request:
    images: np.ndarray  # (n, 3, H, W) float32
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size and max_queue must be at least 1, max_delay_s at least 0")
        self.run = run  # (N, 3, H, W) -> (N, classes); called in the worker thread
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # called with each batch's image count (the batch-size metric)
        self._waiting: deque[_Request] = deque()
        self._queued = 0  # images in self._waiting
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alexnet-batch")

    @property
    def queued(self) -> int:
        """Images waiting for a batch (not those being run)."""
        return self._queued

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Queue `images` (n, 3, H, W) for the next batch; their (n, classes) logits when it has run."""
        n = len(images)
        if n == 0:
            raise ValueError("an empty batch has nothing to predict")
        if self._queued + n > self.max_queue:
            raise QueueFull(
                f"server overloaded: {self._queued} images are waiting and this request adds {n}, "
                f"over the queue limit of {self.max_queue}; retry later"
            )
        self._start()
        request = _Request(images, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        self._queued += n
        self._wakeup.set()
        return await request.future

    def _start(self) -> None:
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._serve_batches())

    async def _serve_batches(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._waiting:
                batch = await self._gather()
                await self._run(batch)

    async def _gather(self) -> list[_Request]:
        """The next batch: the oldest request, then others until full or its delay has passed."""
        batch = [self._waiting.popleft()]
        size = len(batch[0].images)
        deadline = batch[0].arrived + self.max_delay_s
        while size < self.max_batch_size:
            if not self._waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:  # TimeoutError from 3.11 on; 3.10 has its own
                    break
                self._wakeup.clear()
                continue
            if size + len(self._waiting[0].images) > self.max_batch_size:
                break  # a request never splits: it opens the next batch
            request = self._waiting.popleft()
            batch.append(request)
            size += len(request.images)
        self._queued -= size
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        images = np.concatenate([r.images for r in batch]) if len(batch) > 1 else batch[0].images
        if self.on_batch is not None:
            self.on_batch(len(images))
        loop = asyncio.get_running_loop()
        try:
            logits = await loop.run_in_executor(self._executor, self.run, images)
        except Exception as exc:  # every request of the batch gets the model's error
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        start = 0
        for request in batch:
            rows = logits[start : start + len(request.images)]
            start += len(request.images)
            if not request.future.done():  # a client that went away cancelled its future
                request.future.set_result(rows)

    async def close(self) -> None:
        """Stop the worker (after the batch it is running) and release its thread."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)
