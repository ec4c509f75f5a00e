"""Micro-batching and metrics for ``squeezenet serve``.

Requests are gathered into micro-batches (up to ``max_batch`` images or ``max_wait_ms``)
and run as one ONNX Runtime call in a single worker thread, off the event loop; past
``max_queue`` waiting images the answer is 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import SqueezeNetError, require
from .protocol import HTTPError


class Batcher:
    """Gathers preprocessed images into micro-batches; one ORT call per batch, in a
    single worker thread so that the event loop keeps accepting requests."""

    def __init__(self, clf, max_batch: int, max_wait_ms: float, max_queue: int, metrics):
        self.clf, self.max_batch, self.max_wait = clf, max_batch, max_wait_ms / 1000.0
        self.max_queue, self.metrics = max_queue, metrics
        self.queue: asyncio.Queue | None = None
        self.pending = 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort")
        self.task = None
        self.fixed_batch = clf.input_shape[0] if isinstance(clf.input_shape[0], int) else None

    def start(self):
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self):
        while self.pending:  # drain: every accepted request gets its answer
            await asyncio.sleep(0.01)
        if self.task:
            self.task.cancel()
        self.pool.shutdown(wait=True)

    def admit(self, n: int) -> None:
        """Count ``n`` images in (or refuse) before any work is done for them: 413 for a
        request that could never fit, 503 with Retry-After while the queue is full."""
        if n > self.max_queue:
            raise HTTPError(413, f"the request holds {n} images; this server takes at most {self.max_queue} in one "
                                 "request (--max-queue); send fewer per request")
        if self.pending + n > self.max_queue:
            raise HTTPError(503, f"server busy: {self.pending} images waiting (limit {self.max_queue}); retry shortly",
                            {"Retry-After": "1"})
        self.pending += n
        self.metrics.queue.set(self.pending)

    def release(self, n: int) -> None:
        self.pending -= n
        self.metrics.queue.set(self.pending)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Logits for a (B, C, H, W) float32 batch of one request (admitted before)."""
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((x, fut))
        return await fut

    async def infer(self, n: int, make_input) -> np.ndarray:
        """Admit ``n`` images, build their input with ``make_input()`` in a worker thread
        (image decoding stays off the event loop), and run them in a batch."""
        self.admit(n)
        try:
            x = await asyncio.to_thread(make_input)
            return await self.submit(x)
        finally:
            self.release(n)

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            size = len(items[0][0])
            deadline = loop.time() + self.max_wait
            # wait for company only while other requests are on their way (pending counts
            # requests being decoded too): a lone request runs at once
            while size < self.max_batch and not (self.fixed_batch and size >= self.fixed_batch) \
                    and (self.pending > size or not self.queue.empty()):
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                items.append(nxt)
                size += len(nxt[0])
            await self._run(loop, items)

    async def _run(self, loop, items):
        if self.fixed_batch:  # a fixed-batch export: one request at a time
            groups = [[it] for it in items]
        else:
            groups = [items]
        for group in groups:
            x = np.concatenate([g[0] for g in group]) if len(group) > 1 else group[0][0]
            self.metrics.batch.observe(len(x))
            try:
                out = await loop.run_in_executor(self.pool, self.clf.run, x)
            except SqueezeNetError as e:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(HTTPError(400, str(e)))
                continue
            except Exception as e:  # an engine failure must not kill the loop
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(HTTPError(500, f"inference failed: {type(e).__name__}"))
                continue
            i = 0
            for xi, fut in group:
                if not fut.done():
                    fut.set_result(out[i:i + len(xi)])
                i += len(xi)


class Metrics:
    def __init__(self):
        prom = require("prometheus_client", "serve")
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("squeezenet_requests", "HTTP requests by route and status",
                                     ["route", "status"], registry=self.registry)
        self.latency = prom.Histogram("squeezenet_request_seconds", "request latency by route", ["route"],
                                      registry=self.registry,
                                      buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5))
        self.batch = prom.Histogram("squeezenet_batch_size", "images per ONNX Runtime call", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.queue = prom.Gauge("squeezenet_queue_images", "images waiting for a batch", registry=self.registry)
