"""The ASGI app of ``squeezenet serve``: routes, error handlers and the guard.

Every answer that is not a success is JSON ``{"error": "..."}`` with a 4xx status
(a 5xx only if the inference engine itself fails), as the protocol asks and tritonclient
decodes: unknown paths and methods, bad query values and malformed bodies included.
"""


import asyncio
import hmac
import html
import json
import os
import socket
import time
from importlib import resources
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import SqueezeNetError, TooLarge, require
from ..log import note, say
from ..machine import check_threads
from ..imageio import IMG_EXTENSIONS, resize_rule
from .batching import Batcher, Metrics
from .config import ServeConfig
from .connection import http_protocol
from .protocol import BYTES_INPUT, OUTPUT, HTTPError, bytes_elements, check_input, fp_tensor, parse_infer_request

OPEN_ROUTES = ("/v2/health/live", "/v2/health/ready", "/metrics", "/")  # no API key needed
VERSION = "1"


# ------------------------------------------------------------------ the model

def load_classifier(path: str, threads: int | None, verify: bool, backend: str = "ort",
                    calib_dir: str | None = None):
    """An OnnxClassifier for .onnx and SqueezeNet .sqz (torch-free), or for other
    .pt/.sqz files exported with PyTorch at start; ``backend="ort-int8"`` quantizes an
    fp32 model at start (calibrated on ``calib_dir``), without PyTorch."""
    import tempfile

    from ..deploy import onnx_file_for
    from ..formats.onnx import OnnxClassifier

    p, verify = onnx_file_for(path, verify)  # .onnx as it is; .sqz torch-free; .pt exported with PyTorch
    clf = OnnxClassifier(p, threads=threads, verify=verify)
    if backend == "ort-int8":  # only an fp32 graph is quantized at start; an int8 one is served as it is
        from ..deploy.onnx_tools import precision

        kind = precision(clf.path)
        if kind not in ("quantized activations", "fp32"):
            raise SqueezeNetError(f"'{path}' is already quantized ({kind}); --backend ort-int8 would quantize it "
                                  "again, with other numbers than the file's; serve it with --backend ort")
        if kind == "fp32":
            clf = OnnxClassifier(_quantize(clf, calib_dir, Path(tempfile.mkdtemp(prefix="squeezenet-serve-"))),
                                 threads=threads)
    for n in clf.notes:  # no metadata; int8 weights this CPU's kernels can overflow
        note(n)
    return clf


def calibration_files(calib_dir: str, n: int = 256) -> list[Path]:
    """Up to ``n`` image files under ``calib_dir``, taken round-robin over the folders that
    hold them (for a class tree: every class, not the first one or two)."""
    from ..sources import spread_over_classes

    found = sorted(f for f in Path(calib_dir).rglob("*") if f.suffix.lower() in IMG_EXTENSIONS)
    folders = {d: i for i, d in enumerate(sorted({f.parent for f in found}))}
    return [found[i] for i in spread_over_classes([folders[f.parent] for f in found], n)]


def _quantize(clf, calib_dir: str | None, tmp: Path) -> Path:
    """int8 QDQ of the served model, calibrated on up to 256 images of ``calib_dir``
    preprocessed as the model expects, taken round-robin over its folders (a class tree's
    first 256 files would be its first class or two, and the activation ranges theirs)."""
    from ..deploy.onnx_tools import quantize_onnx_int8

    if not calib_dir:
        raise SqueezeNetError("--backend ort-int8 with an fp32 model needs --calib-dir DIR (images to calibrate on), "
                              "or serve the model_int8.onnx that `squeezenet quantize` writes")
    files = calibration_files(calib_dir)
    if not files:
        raise SqueezeNetError(f"no images in --calib-dir '{calib_dir}'")
    x = clf.preprocess([str(f) for f in files])
    return quantize_onnx_int8(clf.path, tmp / "int8.onnx", [x[i:i + 32] for i in range(0, len(x), 32)])


# ------------------------------------------------------------------ the app

def create_app(cfg: ServeConfig, clf=None):
    """The ASGI app (FastAPI behind :class:`Guard`). ``clf`` defaults to loading
    ``cfg.model_file``."""
    fastapi = require("fastapi", "serve")

    cfg.validate()
    check_threads(cfg.threads)
    clf = clf or load_classifier(cfg.model_file, cfg.threads, cfg.verify, cfg.backend, cfg.calib_dir)
    name = cfg.name or Path(cfg.model_file).stem
    metrics = Metrics()
    batcher = Batcher(clf, cfg.max_batch, cfg.max_wait_ms, cfg.max_queue, metrics)

    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = fastapi.FastAPI(title=f"squeezenet serve: {name}", version=__version__, lifespan=lifespan)
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["*"])
    _add_error_handlers(app)
    routes = Routes(cfg, clf, name, batcher, metrics)
    routes.add_to(app)
    api_key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
    return Guard(app, metrics, api_key, cfg.max_body_bytes)


def _json_error(status: int, message: str, headers=None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(HTTPError)
    async def http_error(request, e: HTTPError):
        return _json_error(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request, e):  # 404 unknown path, 405 wrong method
        words = {404: f"no such path: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return _json_error(e.status_code, words.get(e.status_code, str(e.detail)), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e):
        first = (e.errors() or [{}])[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _json_error(400, f"bad request: {where}: {first.get('msg', 'invalid')}")


class Routes:
    """The endpoints, sharing the model, its spec and the batcher."""

    def __init__(self, cfg: ServeConfig, clf, name: str, batcher: Batcher, metrics: Metrics):
        self.cfg, self.clf, self.name, self.batcher, self.metrics = cfg, clf, name, batcher, metrics
        self.spec = clf.spec
        self.n_out = len(self.spec.classes)
        self.in_shape = [d if isinstance(d, int) else -1 for d in clf.input_shape]
        self.page = _page(name, min(5, self.n_out))

    def add_to(self, app) -> None:
        from fastapi import Request
        from fastapi.responses import HTMLResponse, Response

        get, post = app.get, app.post
        get("/v2/health/live")(lambda: {"live": True})
        get("/v2/health/ready")(lambda: {"ready": True})
        get("/v2")(lambda: {"name": "squeezenet", "version": __version__, "extensions": ["binary_tensor_data"]})
        for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{version}"):
            get(prefix)(self.model_metadata)
            get(prefix + "/ready")(self.model_ready)

            async def infer(request: Request, model_name: str, version: str = VERSION):
                return await self.infer(request, model_name, version)
            post(prefix + "/infer")(infer)

        async def predict(request: Request):
            return await self.predict(request)
        post("/v1/predict")(predict)

        async def prometheus():
            prom = require("prometheus_client", "serve")
            return Response(prom.generate_latest(self.metrics.registry), media_type=prom.CONTENT_TYPE_LATEST)
        get("/metrics")(prometheus)
        get("/", response_class=HTMLResponse)(lambda: self.page)

    def check_model(self, model_name: str, version: str = VERSION) -> None:
        if model_name != self.name:
            raise HTTPError(404, f"unknown model '{model_name}'; this server serves '{self.name}'")
        if version != VERSION:
            raise HTTPError(404, f"unknown version '{version}' of '{self.name}'; it has version {VERSION}")

    async def model_metadata(self, model_name: str, version: str = VERSION):
        self.check_model(model_name, version)
        s = self.spec
        return {"name": self.name, "versions": [VERSION], "platform": "onnxruntime_onnx",
                "inputs": [{"name": self.clf.input_name, "datatype": "FP32", "shape": self.in_shape},
                           {"name": BYTES_INPUT, "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, self.n_out]}],
                "parameters": {"classes": s.classes, "input_size": s.input_size, "resize": resize_rule(s),
                               "mean": s.mean, "std": s.std, "tta": s.tta}}

    async def model_ready(self, model_name: str, version: str = VERSION):
        self.check_model(model_name, version)
        return {"name": self.name, "ready": True}

    def preprocess(self, images: list[bytes]) -> np.ndarray:
        if not images:
            raise HTTPError(400, "no image in the request")
        try:
            return self.clf.preprocess(images)
        except TooLarge as e:
            raise HTTPError(413, str(e)) from None
        except SqueezeNetError as e:
            raise HTTPError(400, str(e)) from None

    async def infer(self, request, model_name: str, version: str):
        self.check_model(model_name, version)
        req, tail = parse_infer_request(await read_body(request, self.cfg),
                                        request.headers.get("inference-header-content-length"))
        inp = req["inputs"][0]
        if check_input(inp, self.clf.input_name) == "BYTES":
            elements = bytes_elements(inp, tail)
            logits = await self.batcher.infer(max(1, len(elements)), lambda: self.preprocess(elements))
        else:
            x = fp_tensor(inp, tail, self.in_shape)
            logits = await self.batcher.infer(len(x), lambda: x)
        out = {"model_name": self.name, "model_version": VERSION,
               "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": list(logits.shape),
                            "data": logits.reshape(-1).tolist()}]}
        if "id" in req:
            out["id"] = req["id"]
        return out

    async def predict(self, request):
        from ..formats.onnx import softmax, top_k

        k = self.topk(request.query_params.get("topk"))
        images = await self.images(request)
        probs = softmax(await self.batcher.infer(max(1, len(images)), lambda: self.preprocess(images)))
        return {"model": self.name, "predictions": [[{"class": c, "index": self.spec.classes.index(c), "probability": p}
                                                     for c, p in row] for row in top_k(probs, k, self.spec.classes)]}

    def topk(self, raw: str | None) -> int:
        if raw is None:
            return min(self.cfg.topk, self.n_out)
        if not raw.strip().isdigit() or not 1 <= int(raw) <= self.n_out:
            raise HTTPError(400, f"topk must be between 1 and {self.n_out}, got '{raw[:20]}'")
        return int(raw)

    async def images(self, request) -> list[bytes]:
        """The images of a /v1/predict request: multipart files or a raw body, read under
        the body limit and timeout whether or not the client sent a Content-Length."""
        body = await read_body(request, self.cfg)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return [body] if body else []
        from starlette.requests import Request

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}
        try:
            form = await Request(request.scope, replay).form(max_files=self.cfg.max_queue + 1,
                                                             max_part_size=self.cfg.max_body_bytes)
        except Exception as e:  # the multipart parser's errors, named
            cause = str(getattr(e, "detail", "") or e) or type(e).__name__
            raise HTTPError(400, f"malformed multipart body: {cause[:120]}") from None
        return [await f.read() for _, f in form.multi_items() if hasattr(f, "read")]


async def read_body(request, cfg: ServeConfig) -> bytes:
    """The request body, refused with 413 past the limit (chunked uploads included) and
    with 408 when the client stops sending for ``read_timeout_s``."""
    chunks, total = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), cfg.read_timeout_s)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise HTTPError(408, f"the request body did not arrive within {cfg.read_timeout_s:g} s") from None
        total += len(chunk)
        if total > cfg.max_body_bytes:
            raise HTTPError(413, f"request body exceeds the {cfg.max_body_bytes:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _page(name: str, topk: int) -> str:
    text = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    return text.replace("__NAME__", html.escape(name)).replace("__TOPK__", str(topk))


# ------------------------------------------------------------------ the guard

class Guard:
    """Plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): API key,
    request size limit from Content-Length, and per-route request counts and latency.
    Route labels come from the app's own routes (their path templates)."""

    def __init__(self, app, metrics, api_key: str, max_body: int):
        self.app, self.metrics, self.api_key, self.max_body = app, metrics, api_key.encode(), max_body
        self.templates = [(r.path_regex, r.path) for r in app.routes if hasattr(r, "path_regex")]

    def route(self, path: str) -> str:
        """The route template ``path`` belongs to, or ``other``."""
        return next((template for regex, template in self.templates if regex.match(path)), "other")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), {"code": 500}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        route = self.route(scope["path"])
        problem = self.check(route, headers)
        try:
            if problem:
                await _send_json_error(send_counted, *problem)
            else:
                await self.app(scope, receive, send_counted)
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)

    def check(self, route: str, headers: dict):
        if self.api_key and route not in OPEN_ROUTES:
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


async def _send_json_error(send, status: int, message: str):
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------ running it

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


def check_port(host: str, port: int) -> None:
    """Refuse, in one line and before the model loads, a port that cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise SqueezeNetError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port (or "
                                  "stop what holds it)") from None


def uvicorn_config(app, cfg: ServeConfig, **overrides):
    """uvicorn's settings for ``app``: the address from ``cfg``, a 30 s drain on shutdown,
    and the request-header deadline (:mod:`.connection`); ``overrides`` for tests."""
    uvicorn = require("uvicorn", "serve")
    kw = dict(host=cfg.host, port=cfg.port, log_level="warning", timeout_graceful_shutdown=30,
              http=http_protocol(cfg.header_timeout_s))
    return uvicorn.Config(app, **{**kw, **overrides})


def serve(cfg: ServeConfig) -> None:
    """Run the server until SIGTERM/SIGINT; in-flight requests are drained first and a
    clean drain exits 0."""
    uvicorn = require("uvicorn", "serve")
    cfg.validate()
    check_port(cfg.host, cfg.port)
    app = create_app(cfg)  # loads (and checks) the model before anything is printed

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # drained cleanly: exit 0, not by re-raising the signal

    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    say(f"serving {cfg.model_file} on http://{host}:{cfg.port} (Ctrl-C or SIGTERM to stop)")
    server = Server(uvicorn_config(app, cfg))
    server.run()
    if not server.started:
        raise SqueezeNetError(f"the server could not start on {host}:{cfg.port}")
