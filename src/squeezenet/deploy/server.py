"""``squeezenet serve``: an HTTP inference service for an exported classifier.

- **Open Inference Protocol v2** (KServe / Triton): ``GET /v2/health/live``,
  ``/v2/health/ready``, ``/v2``, ``/v2/models/{name}``, ``/v2/models/{name}/ready``;
  ``POST /v2/models/{name}/infer`` with JSON tensors, or Triton's binary-data extension
  (``Inference-Header-Content-Length``) as ``tritonclient[http]`` sends it. Inputs: FP32
  NCHW (already preprocessed), or BYTES holding encoded images (decoded and preprocessed
  here, exactly as in training). Responses are JSON tensors.
- ``POST /v1/predict``: one or more images (multipart files, or a raw body) -> top-k
  classes with names and probabilities.
- ``GET /metrics`` (Prometheus), ``GET /docs`` (OpenAPI), ``GET /`` (a page: drop an
  image, see the top-5).

Requests are gathered into micro-batches (up to ``max_batch`` images or ``max_wait_ms``)
and run as one ONNX Runtime call in a worker thread, off the event loop; past
``max_queue`` waiting images the answer is 503 with ``Retry-After``. Secure defaults:
loopback only, an optional API key (from an environment variable, compared in constant
time), a request size limit, CORS off unless origins are given, no pickle ever loaded
(.pt files are read with ``weights_only=True``).
Every bad request is a JSON error with a 4xx status naming the problem.

Needs ``pip install 'squeezenet-toolkit[serve]'`` (fastapi, uvicorn, prometheus_client,
python-multipart, onnxruntime, onnx, numpy, pillow). .onnx files, and .sqz files of the
SqueezeNet family (converted by :mod:`squeezenet.deploy.sqz_onnx`), are served without
PyTorch; .pt files and other .sqz files are exported with PyTorch at start.
"""


import asyncio
import base64
import hmac
import json
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import SqueezeNetError, require

DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}


@dataclass
class ServeConfig:
    model_file: str
    name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 256
    max_body_bytes: int = 16 * 1024 * 1024
    api_key_env: str | None = None
    cors_origins: tuple = ()
    threads: int | None = None
    topk: int = 5
    verify: bool = True
    backend: str = "ort"  # "ort": the file as it is; "ort-int8": int8 QDQ (quantized at start if needed)
    calib_dir: str | None = None  # images to calibrate "ort-int8" with

    def validate(self) -> "ServeConfig":
        if self.host not in ("127.0.0.1", "::1", "localhost") and not os.environ.get("SQUEEZENET_SERVE_PUBLIC"):
            raise SqueezeNetError(f"--host {self.host} would expose the server beyond this machine; set "
                                  "SQUEEZENET_SERVE_PUBLIC=1 to allow it deliberately")
        checks = [(0 <= self.port <= 65535, "--port must be 0-65535"), (self.max_batch >= 1, "--max-batch must be >= 1"),
                  (0 <= self.max_wait_ms <= 10_000, "--max-wait-ms must be 0-10000"),
                  (self.max_queue >= 1, "--max-queue must be >= 1"), (self.max_body_bytes >= 1024,
                                                                     "--max-body-mb is too small")]
        for ok, msg in checks:
            if not ok:
                raise SqueezeNetError(msg)
        if self.backend not in ("ort", "ort-int8"):
            raise SqueezeNetError(f"--backend must be ort or ort-int8, got '{self.backend}'")
        if self.calib_dir and not Path(self.calib_dir).is_dir():
            raise SqueezeNetError(f"--calib-dir '{self.calib_dir}' is not a folder")
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise SqueezeNetError(f"--api-key-env {self.api_key_env}: that environment variable is empty or unset")
        return self


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def load_classifier(path: str, threads: int | None, verify: bool, backend: str = "ort",
                    calib_dir: str | None = None):
    """An OnnxClassifier for .onnx (torch-free), or for .pt/.sqz exported at start;
    ``backend="ort-int8"`` quantizes an fp32 model at start (calibrated on ``calib_dir``)."""
    import tempfile

    from ..checkpoint import sniff
    from .runtime import OnnxClassifier

    p = Path(path)
    if not p.is_file():
        raise SqueezeNetError(f"model file not found: '{path}'")
    kind = sniff(p)
    if kind in ("checkpoint", "sqz"):
        tmp = Path(tempfile.mkdtemp(prefix="squeezenet-serve-")) / (p.stem + ".onnx")
        if kind == "sqz" and _is_squeezenet_sqz(p):
            from .sqz_onnx import sqz_to_onnx  # numpy + onnx: no PyTorch

            sqz_to_onnx(p, tmp)
        else:
            from .export import export_onnx  # needs PyTorch

            export_onnx(checkpoint=str(p), out=str(tmp), dynamic_batch=True, verify=verify)
        p, verify, kind = tmp, True, "onnx"
    if kind == "onnx":
        clf = OnnxClassifier(p, threads=threads, verify=verify)
        if backend == "ort-int8" and not _is_int8(clf):
            clf = OnnxClassifier(_quantize(clf, calib_dir, Path(tempfile.mkdtemp(prefix="squeezenet-serve-"))),
                                 threads=threads)
        return clf
    from ..checkpoint import KIND_WORDS

    raise SqueezeNetError(f"'{path}' is {KIND_WORDS[kind]}; serve a .onnx, .pt or .sqz model file")


def _is_squeezenet_sqz(path) -> bool:
    from ..compression.container import _read
    from .sqz_onnx import _BASE

    return bool(_BASE.match(_read(path)[0]["model_name"]))


def _is_int8(clf) -> bool:
    from .runtime import read_onnx

    return b"QuantizeLinear" in read_onnx(clf.path, verify=False)


def _quantize(clf, calib_dir: str | None, tmp: Path) -> Path:
    """int8 QDQ of the served model, calibrated on up to 256 images of ``calib_dir``
    preprocessed as the model expects (see deploy.quantize)."""
    from ..data import IMG_EXTENSIONS
    from .quantize import quantize_onnx_int8

    if not calib_dir:
        raise SqueezeNetError("--backend ort-int8 with an fp32 model needs --calib-dir DIR (images to calibrate on), "
                              "or serve the model_int8.onnx that `squeezenet quantize` writes")
    files = sorted(f for f in Path(calib_dir).rglob("*") if f.suffix.lower() in IMG_EXTENSIONS)[:256]
    if not files:
        raise SqueezeNetError(f"no images in --calib-dir '{calib_dir}'")
    x = clf.preprocess([str(f) for f in files])
    return quantize_onnx_int8(clf.path, tmp / "int8.onnx", [x[i:i + 32] for i in range(0, len(x), 32)])


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
        """Count ``n`` images in (or refuse with 503) before any work is done for them."""
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


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def parse_infer_request(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """(JSON header, binary tail) of a v2 infer request, JSON or binary-data extension."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise HTTPError(400, "Inference-Header-Content-Length is not an integer") from None
        if not 0 < n <= len(body):
            raise HTTPError(400, f"Inference-Header-Content-Length {n} does not fit the {len(body)}-byte body")
        head, tail = body[:n], body[n:]
    else:
        head, tail = body, b""
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError) as e:
        raise HTTPError(400, f"malformed JSON: {str(e)[:80]}") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or len(req["inputs"]) != 1:
        raise HTTPError(400, "the request must have 'inputs' with exactly one tensor")
    return req, tail


def _bytes_elements(inp: dict, tail: bytes) -> list[bytes]:
    """BYTES tensor elements: binary (4-byte little-endian length prefixes) or JSON
    strings (base64, or raw text)."""
    size = (inp.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(tail):
            raise HTTPError(400, "binary_data_size does not match the body")
        buf, out, i = tail[:size], [], 0
        while i < len(buf):
            if i + 4 > len(buf):
                raise HTTPError(400, "truncated BYTES element")
            (n,) = struct.unpack_from("<I", buf, i)
            if i + 4 + n > len(buf):
                raise HTTPError(400, "truncated BYTES element")
            out.append(buf[i + 4:i + 4 + n])
            i += 4 + n
        return out
    data = inp.get("data")
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        raise HTTPError(400, "BYTES input 'data' must be a list of base64 strings")
    try:
        return [base64.b64decode(d, validate=True) for d in data]
    except ValueError:
        raise HTTPError(400, "BYTES input 'data' is not valid base64") from None


def _fp_tensor(inp: dict, tail: bytes, want) -> np.ndarray:
    dtype = DTYPES[inp["datatype"]]
    shape = inp.get("shape")
    if not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise HTTPError(400, f"input shape must be [B, C, H, W] with positive sizes, got {shape!r}")
    if any(isinstance(w, int) and w != s for w, s in zip(want[1:], shape[1:])):
        raise HTTPError(400, f"input shape {shape} does not match the model's [B, {', '.join(map(str, want[1:]))}]")
    count = int(np.prod(shape))
    if count > 64 * 3 * 1024 * 1024:
        raise HTTPError(413, "input tensor too large")
    size = (inp.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if size != count * np.dtype(dtype).itemsize or size > len(tail):
            raise HTTPError(400, f"binary_data_size {size} does not match shape {shape} of {inp['datatype']}")
        arr = np.frombuffer(tail[:size], dtype=dtype)
    else:
        try:
            arr = np.asarray(inp.get("data"), dtype=dtype).reshape(-1)
        except (ValueError, TypeError):
            raise HTTPError(400, "input 'data' is not a list of numbers") from None
        if arr.size != count:
            raise HTTPError(400, f"input 'data' has {arr.size} values, shape {shape} needs {count}")
    arr = arr.astype(np.float32).reshape(shape)
    if not np.isfinite(arr).all():
        raise HTTPError(400, "input holds NaN or inf")
    return arr


def create_app(cfg: ServeConfig, clf=None):
    """The ASGI app (FastAPI). ``clf`` defaults to loading ``cfg.model_file``."""
    fastapi = require("fastapi", "serve")
    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    cfg.validate()
    clf = clf or load_classifier(cfg.model_file, cfg.threads, cfg.verify, cfg.backend, cfg.calib_dir)
    name = cfg.name or Path(cfg.model_file).stem
    spec = clf.spec
    metrics = Metrics()
    batcher = Batcher(clf, cfg.max_batch, cfg.max_wait_ms, cfg.max_queue, metrics)
    api_key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""  # checked by Guard
    n_out = len(spec.classes)
    in_shape = [-1 if not isinstance(d, int) else d for d in clf.input_shape]

    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = fastapi.FastAPI(title=f"squeezenet serve: {name}", version=__version__, lifespan=lifespan)
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["*"])

    def error(status: int, message: str, headers=None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPError)
    async def http_error(request, e: HTTPError):
        return error(e.status, e.message, e.headers)

    async def read_body(request) -> bytes:
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > cfg.max_body_bytes:
                raise HTTPError(413, f"request body exceeds the {cfg.max_body_bytes:,}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def check_model(model_name: str):
        if model_name != name:
            raise HTTPError(404, f"unknown model '{model_name}'; this server serves '{name}'")

    def preprocess(images: list[bytes]) -> np.ndarray:
        from ..imageio import image_to_array, normalize_array

        if not images:
            raise HTTPError(400, "no image in the request")
        try:
            arrays = [image_to_array(b, spec.channels, spec.input_size) for b in images]
        except SqueezeNetError as e:
            status = 413 if "too large" in str(e) else 400
            raise HTTPError(status, str(e)) from None
        return normalize_array(np.stack(arrays), spec.mean, spec.std)

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return {"name": "squeezenet", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{model_name}")
    async def model_metadata(model_name: str):
        check_model(model_name)
        return {"name": name, "versions": ["1"], "platform": "onnxruntime_onnx",
                "inputs": [{"name": clf.input_name, "datatype": "FP32", "shape": in_shape},
                           {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, n_out]}],
                "parameters": {"classes": spec.classes, "input_size": spec.input_size, "mean": spec.mean,
                               "std": spec.std}}

    @app.get("/v2/models/{model_name}/ready")
    async def model_ready(model_name: str):
        check_model(model_name)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{model_name}/infer")
    async def infer(model_name: str, request: Request):
        check_model(model_name)
        req, tail = parse_infer_request(await read_body(request),
                                        request.headers.get("inference-header-content-length"))
        inp = req["inputs"][0]
        if not isinstance(inp, dict) or inp.get("datatype") not in ("BYTES", *DTYPES):
            raise HTTPError(400, f"input datatype must be FP32 (NCHW) or BYTES (encoded images), got "
                                 f"{inp.get('datatype') if isinstance(inp, dict) else inp!r}")
        if inp["datatype"] == "BYTES":
            elements = _bytes_elements(inp, tail)
            logits = await batcher.infer(max(1, len(elements)), lambda: preprocess(elements))
        else:
            x = _fp_tensor(inp, tail, in_shape)
            logits = await batcher.infer(len(x), lambda: x)
        out = {"model_name": name, "model_version": "1",
               "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(logits.shape),
                            "data": logits.reshape(-1).tolist()}]}
        if "id" in req:
            out["id"] = req["id"]
        return out

    @app.post("/v1/predict")
    async def predict(request: Request, topk: int | None = None):
        k = cfg.topk if topk is None else topk
        if not 1 <= k <= n_out:
            raise HTTPError(400, f"topk must be between 1 and {n_out}")
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=cfg.max_batch, max_part_size=cfg.max_body_bytes)
            except Exception as e:  # the multipart parser's errors
                raise HTTPError(400, f"malformed multipart body ({type(e).__name__})") from None
            images = [await f.read() for _, f in form.multi_items() if hasattr(f, "read")]
        else:
            body = await read_body(request)
            images = [body] if body else []
        probs = _softmax(await batcher.infer(max(1, len(images)), lambda: preprocess(images)))
        idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return {"model": name, "predictions": [[{"class": spec.classes[i], "index": int(i), "probability": float(p[i])}
                                                for i in row] for row, p in zip(idx, probs)]}

    @app.get("/metrics")
    async def prometheus_metrics():
        prom = require("prometheus_client", "serve")
        return Response(prom.generate_latest(metrics.registry), media_type=prom.CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE.replace("__NAME__", name)

    return Guard(app, metrics, api_key, cfg.max_body_bytes)


class Guard:
    """Plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): API key,
    request size limit from Content-Length, and per-route request counts and latency."""

    OPEN = ("/v2/health/live", "/v2/health/ready", "/metrics", "/")

    def __init__(self, app, metrics, api_key: str, max_body: int):
        self.app, self.metrics, self.api_key, self.max_body = app, metrics, api_key.encode(), max_body

    @staticmethod
    def route(path: str) -> str:
        if path in ("/", "/metrics", "/v1/predict", "/docs"):
            return path
        return "/v2/infer" if path.endswith("/infer") else "/v2/other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), {"code": 500}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        problem = self.check(scope["path"], headers)
        try:
            if problem:
                await _json_error(send_counted, *problem)
            else:
                await self.app(scope, receive, send_counted)
        finally:
            route = self.route(scope["path"])
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)

    def check(self, path: str, headers: dict):
        if self.api_key and path not in self.OPEN:
            given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), self.api_key):
                return 401, "missing or wrong API key (send X-API-Key or Authorization: Bearer)"
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "Content-Length is not an integer"
            if int(length) > self.max_body:
                return 413, f"request body of {int(length):,} bytes exceeds the {self.max_body:,}-byte limit"
        return None


async def _json_error(send, status: int, message: str):
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def wait_until_ready(url: str, proc=None, timeout: float = 60.0) -> None:
    """Poll ``url``/v2/health/ready until it answers 200 (for scripts and tests that start
    `squeezenet serve` as a process); raise if ``proc`` exits or ``timeout`` passes."""
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.time() > deadline or (proc is not None and proc.poll() is not None):
            raise SqueezeNetError(f"the server at {url} did not become ready")
        time.sleep(0.2)


def serve(cfg: ServeConfig) -> None:
    """Run the server until SIGTERM/SIGINT (in-flight requests are drained first)."""
    import sys

    uvicorn = require("uvicorn", "serve")
    app = create_app(cfg)  # loads (and checks) the model before anything is printed
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    print(f"serving {cfg.model_file} on http://{host}:{cfg.port} (Ctrl-C or SIGTERM to stop)", file=sys.stderr)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", timeout_graceful_shutdown=30)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__NAME__ - squeezenet serve</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;color:#222}
#drop{border:2px dashed #888;border-radius:8px;padding:2rem;text-align:center;cursor:pointer}
#drop.over{background:#eef}
.row{display:flex;align-items:center;margin:.3rem 0}.name{width:12rem}.bar{height:1rem;background:#4a7;margin-right:.5rem}
#err{color:#b00}
</style></head><body>
<h1>__NAME__</h1>
<div id="drop">Drop an image here, or click to choose one<input id="file" type="file" accept="image/*" hidden></div>
<p id="err"></p><div id="result"></div>
<script>
const drop = document.getElementById('drop'), file = document.getElementById('file');
drop.onclick = () => file.click();
file.onchange = () => file.files.length && send(file.files[0]);
drop.ondragover = e => { e.preventDefault(); drop.classList.add('over'); };
drop.ondragleave = () => drop.classList.remove('over');
drop.ondrop = e => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]); };
async function send(f) {
  const fd = new FormData(); fd.append('file', f);
  document.getElementById('err').textContent = '';
  const r = await fetch('/v1/predict?topk=5', {method: 'POST', body: fd});
  const j = await r.json();
  if (!r.ok) { document.getElementById('err').textContent = j.error; return; }
  const out = document.getElementById('result'); out.innerHTML = '';
  for (const p of j.predictions[0]) {
    const row = document.createElement('div'); row.className = 'row';
    row.innerHTML = `<span class="name"></span><span class="bar" style="width:${Math.round(p.probability * 300)}px"></span><span class="pct">${(100 * p.probability).toFixed(2)}%</span>`;
    row.querySelector('.name').textContent = p.class;
    out.appendChild(row);
  }
}
</script></body></html>
"""
