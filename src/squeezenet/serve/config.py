"""Serving settings: each field once, with its type, default, help and check; the
``serve`` flags are generated from it (:func:`squeezenet.settings.add_arguments`), as
``train``'s are from :class:`squeezenet.config.TrainConfig`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import SqueezeNetError
from ..settings import add_arguments, one_of, opt, positive_int, validate_fields, within


@dataclass
class ServeConfig:
    model_file: str = opt("", "the model: a .onnx, .pt or .sqz file, or a run folder", positional=True)
    name: str | None = opt(None, "model name in the /v2 paths (default: the file's stem)")
    host: str = opt("127.0.0.1", "bind address (loopback only unless SQUEEZENET_SERVE_PUBLIC=1)")
    port: int = opt(8000, "TCP port (0: any free port)", within(0, 65535))
    max_batch: int = opt(32, "images per ONNX Runtime call (1: no batching)", positive_int)
    max_wait_ms: float = opt(2.0, "how long a batch waits to fill, in ms", within(0, 10_000))
    max_queue: int = opt(256, "waiting images before 503 (and the most one request may hold: 413 past it)",
                         positive_int)
    max_body_mb: float = opt(16.0, "request body limit in MB, chunked uploads included", within(0.001, 4096))
    header_timeout_s: float = opt(10.0, "seconds a client may take to send a request's line and headers (408 and "
                                  "the connection closed after)", within(0.01, 3600))
    read_timeout_s: float = opt(30.0, "seconds a client may take to send its body (408 after)", within(0.01, 3600))
    api_key_env: str | None = opt(None, "require the API key held in this environment variable")
    cors_origins: tuple = opt((), "allow this browser origin (repeatable)", flag="--cors-origin")
    threads: int | None = opt(None, "ONNX Runtime intra-op threads (default: the cores)", positive_int)
    topk: int = opt(5, "classes returned by /v1/predict when the request names none", positive_int)
    verify: bool = opt(True, "load a model file without our integrity digest (foreign or older files)",
                       flag="--skip-integrity-check", invert=True)
    backend: str = opt("ort", "ort: the model as it is; ort-int8: int8 QDQ (an fp32 model is quantized at start, "
                       "calibrated on --calib-dir)", one_of("ort", "ort-int8"), choices=["ort", "ort-int8"])
    calib_dir: str | None = opt(None, "images to calibrate --backend ort-int8 with (up to 256 are used)")

    @classmethod
    def add_arguments(cls, parser) -> None:
        add_arguments(parser, cls)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def validate(self) -> "ServeConfig":
        validate_fields(self)
        if self.host not in ("127.0.0.1", "::1", "localhost") and not os.environ.get("SQUEEZENET_SERVE_PUBLIC"):
            raise SqueezeNetError(f"--host {self.host} would expose the server beyond this machine; set "
                                  "SQUEEZENET_SERVE_PUBLIC=1 to allow it deliberately")
        if self.calib_dir and not Path(self.calib_dir).is_dir():
            raise SqueezeNetError(f"--calib-dir '{self.calib_dir}' is not a folder")
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise SqueezeNetError(f"--api-key-env {self.api_key_env}: that environment variable is empty or unset")
        return self


