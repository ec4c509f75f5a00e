"""Serving settings: each field once, with its default, help and flag (the ``serve``
flags are generated from this dataclass by :func:`squeezenet.config.add_arguments`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SqueezeNetError


def _opt(default, help: str, **meta):
    return field(default=default, metadata=dict(help=help, **meta))


@dataclass
class ServeConfig:
    model_file: str = _opt("", "the .onnx, .pt or .sqz file to serve", positional=True)
    name: str | None = _opt(None, "model name in the /v2 paths (default: the file's stem)")
    host: str = _opt("127.0.0.1", "bind address (loopback only unless SQUEEZENET_SERVE_PUBLIC=1)")
    port: int = _opt(8000, "TCP port (0: any free port)", zero_ok=True)
    max_batch: int = _opt(32, "images per ONNX Runtime call (1: no batching)")
    max_wait_ms: float = _opt(2.0, "how long a batch waits to fill, in ms", zero_ok=True)
    max_queue: int = _opt(256, "waiting images before 503 (and the most one request may hold: 413 past it)")
    max_body_mb: float = _opt(16.0, "request body limit in MB, chunked uploads included")
    read_timeout_s: float = _opt(30.0, "seconds a client may take to send its body (408 after)")
    api_key_env: str | None = _opt(None, "require the API key held in this environment variable")
    cors_origins: tuple = _opt((), "allow this browser origin (repeatable)", flag="--cors-origin")
    threads: int | None = _opt(None, "ONNX Runtime intra-op threads (default: the cores)")
    topk: int = _opt(5, "classes returned by /v1/predict when the request names none")
    verify: bool = _opt(True, "check the file's integrity digest", flag="--skip-integrity-check", invert=True)
    backend: str = _opt("ort", "ort: the model as it is; ort-int8: int8 QDQ (an fp32 model is quantized at start, "
                        "calibrated on --calib-dir)", choices=("ort", "ort-int8"))
    calib_dir: str | None = _opt(None, "images to calibrate --backend ort-int8 with (up to 256 are used)")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def validate(self) -> "ServeConfig":
        if self.host not in ("127.0.0.1", "::1", "localhost") and not os.environ.get("SQUEEZENET_SERVE_PUBLIC"):
            raise SqueezeNetError(f"--host {self.host} would expose the server beyond this machine; set "
                                  "SQUEEZENET_SERVE_PUBLIC=1 to allow it deliberately")
        checks = [(0 <= self.port <= 65535, "--port must be 0-65535"), (self.max_batch >= 1, "--max-batch must be >= 1"),
                  (0 <= self.max_wait_ms <= 10_000, "--max-wait-ms must be 0-10000"),
                  (self.max_queue >= 1, "--max-queue must be >= 1"),
                  (self.max_body_bytes >= 1024, "--max-body-mb is too small (at least 0.001)"),
                  (0 < self.read_timeout_s <= 3600, "--read-timeout-s must be in (0, 3600]"),
                  (self.topk >= 1, "--topk must be >= 1"), (self.threads is None or self.threads >= 1,
                                                            "--threads must be >= 1")]
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
