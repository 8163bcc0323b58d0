"""Dynamic batching: concurrent requests gathered into one model run, each answered with its rows.

    batcher = DynamicBatcher(predictor.predict_logits, max_batch_size=32, max_delay_s=0.005, max_queue=256)
    logits = await batcher.submit(images, len(images))  # (n, 3, H, W) -> (n, classes), from a shared batch

With `prepare` (e.g. decode + preprocess encoded files), an admitted request is prepared at once
on `prepare_threads` threads, while the model runs earlier batches (a refused request costs no
preparing); its batch waits for it. A request whose input cannot be prepared gets its own error;
the rest of its batch runs.

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
from typing import Any

import numpy as np

from runtime.errors import DeployError


class QueueFull(DeployError):
    """More images are waiting than the queue allows: the server is overloaded, try again later."""


@dataclass
class _Request:
    item: Any  # (n, 3, H, W) float32, or what `prepare` turns into that
    count: int  # n
    future: asyncio.Future
    prepared: asyncio.Future | None = None  # `prepare`'s result: the array, or the exception it raised
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: Callable[[int, float, float], None] | None = None,
        prepare: Callable[[Any], np.ndarray] | None = None,
        prepare_threads: int = 1,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size and max_queue must be at least 1, max_delay_s at least 0")
        self.run = run  # (N, 3, H, W) -> (N, classes); called in the worker thread
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        # called after each batch with (images, seconds preparing, seconds running the model): the metrics
        self.on_batch = on_batch
        self.prepare = prepare
        self._waiting: deque[_Request] = deque()
        self._queued = 0  # images in self._waiting
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alexnet-batch")
        self._preparers = ThreadPoolExecutor(max_workers=max(1, prepare_threads), thread_name_prefix="alexnet-prep")

    @property
    def queued(self) -> int:
        """Images waiting for a batch (not those being run)."""
        return self._queued

    async def submit(self, item: Any, n: int) -> np.ndarray:
        """Queue `item` (n images) for the next batch; their (n, classes) logits when it has run."""
        if n == 0:
            raise ValueError("an empty batch has nothing to predict")
        if self._queued + n > self.max_queue:
            raise QueueFull(
                f"server overloaded: {self._queued} images are waiting and this request adds {n}, "
                f"over the queue limit of {self.max_queue}; retry later"
            )
        self._start()
        loop = asyncio.get_running_loop()
        request = _Request(item, n, loop.create_future())
        if self.prepare is not None:
            request.prepared = loop.run_in_executor(self._preparers, self._prepare_one, item)
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
        size = batch[0].count
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
            if size + self._waiting[0].count > self.max_batch_size:
                break  # a request never splits: it opens the next batch
            request = self._waiting.popleft()
            batch.append(request)
            size += request.count
        self._queued -= size
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        prepared = [await r.prepared if r.prepared is not None else r.item for r in batch]
        waited = time.perf_counter() - start
        try:
            answers, run_s = await loop.run_in_executor(self._executor, self._execute, prepared)
        except Exception as exc:  # the model failed: every request of the batch gets its error
            answers, run_s = [exc] * len(batch), 0.0
        if self.on_batch is not None and run_s:
            self.on_batch(sum(len(p) for p in prepared if not isinstance(p, Exception)), waited, run_s)
        for request, answer in zip(batch, answers):
            if request.future.done():  # a client that went away cancelled its future
                continue
            if isinstance(answer, Exception):
                request.future.set_exception(answer)
            else:
                request.future.set_result(answer)

    def _execute(self, prepared: list[Any]) -> tuple[list[np.ndarray | Exception], float]:
        """In the worker thread: the prepared arrays as one model run, split back per request; (answers, seconds)."""
        ready = [p for p in prepared if not isinstance(p, Exception)]
        if not ready:
            return prepared, 0.0
        start = time.perf_counter()
        logits = self.run(np.concatenate(ready) if len(ready) > 1 else ready[0])
        seconds = time.perf_counter() - start
        answers, row = [], 0
        for p in prepared:
            if isinstance(p, Exception):
                answers.append(p)
                continue
            answers.append(logits[row : row + len(p)])
            row += len(p)
        return answers, seconds

    def _prepare_one(self, item: Any) -> np.ndarray | Exception:
        try:
            return self.prepare(item)
        except Exception as exc:  # this request's own error (an undecodable image), not its batch's
            return exc

    async def close(self) -> None:
        """Stop the worker (after the batch it is running) and release its thread."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)
        self._preparers.shutdown(wait=True)
