"""Load test of `squeezenet serve`: throughput and p50/p99 latency at concurrency 1, 8 and 32,
micro-batching on and off, fp32 and int8, with the in-process `deploy.load(...).predict`
call timed in the same run as the ceiling.

squeezenet1_1 at 224 px (random weights: speed does not depend on them), exported to ONNX
and quantized to int8 (QDQ, calibrated on random inputs). Each server is a separate
`squeezenet serve` process on 127.0.0.1; the client is httpx's async client in this
process, so on a 2-core machine client and server share the cores (say so when quoting).
Every loop is bounded: --requests per configuration, --timeout seconds per request.

Usage: python benchmarks/serve_load.py [--requests 300] [--json runs/bench/serve_load.json]
"""

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_models(tmp: Path) -> dict:
    from squeezenet import create_model
    from squeezenet.deploy.export import export_model_to_onnx
    from squeezenet.deploy.onnx_tools import quantize_onnx_int8

    spec = dict(name="bench", classes=[f"c{i}" for i in range(1000)], channels=3, input_size=224,
                mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    fp32 = export_model_to_onnx(create_model("squeezenet1_1"), tmp / "fp32.onnx", (3, 224, 224), dynamic_batch=True,
                                metadata=spec)
    calib = [np.random.default_rng(i).standard_normal((8, 3, 224, 224)).astype(np.float32) for i in range(4)]
    int8 = quantize_onnx_int8(fp32, tmp / "int8.onnx", calib)
    return {"fp32": fp32, "int8": int8}


def image_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 320, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def in_process_ms(path, img: bytes, n: int) -> list[float]:
    from squeezenet.deploy import load

    clf = load(path, threads=os.cpu_count())
    for _ in range(10):
        clf.predict([img])
    out = []
    for _ in range(n):
        t = time.perf_counter()
        clf.predict([img])
        out.append(1000 * (time.perf_counter() - t))
    return out


class Serve:
    def __init__(self, model, max_batch):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "squeezenet", "serve", str(model), "--port",
                                      str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", "2",
                                      "--max-queue", "4096"], stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        from squeezenet.serve import wait_until_ready

        wait_until_ready(self.url, self.proc)

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def load(url, img, concurrency, n, timeout):
    lat, sem = [], asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout,
                                 limits=httpx.Limits(max_connections=concurrency)) as c:
        for _ in range(min(10, n)):
            await c.post("/v1/predict?topk=1", content=img)

        async def one():
            async with sem:
                t = time.perf_counter()
                r = await c.post("/v1/predict?topk=1", content=img)
                lat.append(1000 * (time.perf_counter() - t))
                return r.status_code

        t0 = time.perf_counter()
        codes = await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - t0
    return {"rps": n / wall, "p50_ms": statistics.median(lat), "p99_ms": float(np.percentile(lat, 99)),
            "ok": codes.count(200), "n": n}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--json")
    a = ap.parse_args()
    from squeezenet.deploy.bench import machine_tag

    img, rows = image_bytes(), []
    with tempfile.TemporaryDirectory() as tmp:
        models = make_models(Path(tmp))
        for prec, path in models.items():
            ceiling = in_process_ms(path, img, 100)
            rows.append({"precision": prec, "mode": "in-process deploy.load", "concurrency": 1,
                         "rps": 1000 / statistics.median(ceiling), "p50_ms": statistics.median(ceiling),
                         "p99_ms": float(np.percentile(ceiling, 99)), "ok": len(ceiling), "n": len(ceiling)})
            for batching, max_batch in (("batching on", 32), ("batching off", 1)):
                srv = Serve(path, max_batch)
                try:
                    for c in (1, 8, 32):
                        r = asyncio.run(load(srv.url, img, c, a.requests, a.timeout))
                        rows.append({"precision": prec, "mode": batching, "concurrency": c, **r})
                        print(rows[-1], file=sys.stderr)
                finally:
                    srv.close()
    print(f"machine: {machine_tag()}; squeezenet1_1 @ 224, /v1/predict with a 320x256 JPEG, {a.requests} "
          "requests per row")
    print("| precision | mode | concurrency | req/s | p50 ms | p99 ms | ok |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['mode']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['ok']}/{r['n']} |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"machine": machine_tag(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
