"""The HTTP service: the Open Inference Protocol v2 driven by the real tritonclient, the
convenience endpoint, metrics, micro-batching, backpressure, and bad input that never hurts
it. Loopback only; every request loop is bounded."""

import asyncio
import base64
import io
import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from squeezenet import SqueezeNetError  # noqa: E402
from squeezenet.serve import ServeConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def onnx_model(tiny_run, tmp_path_factory):
    from squeezenet.deploy.export import export_onnx

    out = tmp_path_factory.mktemp("serve") / "tiny.onnx"
    export_onnx(checkpoint=str(tiny_run / "last.pt"), out=str(out), dynamic_batch=True)
    return out


class Server:
    """uvicorn in a background thread on 127.0.0.1, a free port."""

    def __init__(self, cfg: ServeConfig):
        import uvicorn

        from squeezenet.serve import uvicorn_config

        self.app = create_app(cfg)
        self.server = uvicorn.Server(uvicorn_config(self.app, cfg, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture(scope="module")
def server(onnx_model):
    with Server(ServeConfig(str(onnx_model), max_body_mb=2.0)) as s:
        yield s


def png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [png(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def reference(onnx_model):
    from squeezenet.deploy import load

    return load(onnx_model)


def test_health_and_metadata(server):
    c = httpx.Client(base_url=server.url)
    assert c.get("/v2/health/live").status_code == 200 and c.get("/v2/health/ready").status_code == 200
    meta = c.get("/v2/models/tiny").json()
    assert meta["name"] == "tiny" and meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    assert meta["outputs"][0] == {"name": "logits", "datatype": "FP32", "shape": [-1, 10]}
    assert meta["parameters"]["tta"] is None  # a plain export; `export --tta flip` records "flip"
    assert meta["parameters"]["resize"] == {"mode": "whole image to input_size x input_size",  # a small-image model
                                            "orientation": "EXIF tag applied first"}
    assert c.get("/v2/models/tiny/ready").json()["ready"]
    r = c.get("/v2/models/other")
    assert r.status_code == 404 and "unknown model 'other'" in r.json()["error"]
    assert "openapi" in c.get("/openapi.json").json()


def test_the_official_triton_client_works_unchanged(server, reference):
    tc = pytest.importorskip("tritonclient.http")
    client = tc.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_model_ready("tiny")
    assert client.get_model_metadata("tiny")["name"] == "tiny"
    imgs = images(3)
    x = reference.preprocess(imgs)
    inp = tc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    got = client.infer("tiny", [inp], outputs=[tc.InferRequestedOutput("logits", binary_data=False)])
    np.testing.assert_allclose(got.as_numpy("logits"), reference.run(x), rtol=1e-5, atol=1e-5)
    raw = tc.InferInput("image_bytes", [3], "BYTES")  # encoded images, decoded on the server
    raw.set_data_from_numpy(np.array(imgs, dtype=np.object_), binary_data=True)
    got = client.infer("tiny", [raw])
    np.testing.assert_allclose(got.as_numpy("logits"), reference.run(x), rtol=1e-5, atol=1e-5)


def test_json_tensors_and_the_predict_endpoint(server, reference):
    c = httpx.Client(base_url=server.url)
    imgs = images(2, seed=3)
    x = reference.preprocess(imgs)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    out = c.post("/v2/models/tiny/infer", json=body).json()["outputs"][0]
    np.testing.assert_allclose(np.array(out["data"]).reshape(out["shape"]), reference.run(x), rtol=1e-5, atol=1e-5)
    b64 = {"inputs": [{"name": "image_bytes", "shape": [2], "datatype": "BYTES",
                       "data": [base64.b64encode(i).decode() for i in imgs]}]}
    out = c.post("/v2/models/tiny/infer", json=b64).json()["outputs"][0]
    np.testing.assert_allclose(np.array(out["data"]).reshape(out["shape"]), reference.run(x), rtol=1e-5, atol=1e-5)
    want = reference.predict(imgs, topk=3)
    multi = c.post("/v1/predict?topk=3", files=[("file", ("a.png", imgs[0])), ("file", ("b.png", imgs[1]))]).json()
    for row, w in zip(multi["predictions"], want):
        assert [p["class"] for p in row] == [n for n, _ in w]
        assert [p["probability"] for p in row] == pytest.approx([p for _, p in w], abs=1e-5)
    single = c.post("/v1/predict?topk=3", content=imgs[0]).json()["predictions"][0]
    assert [p["class"] for p in single] == [n for n, _ in want[0]]


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _bomb() -> bytes:
    import struct
    import zlib

    data = bytearray(png(np.zeros((8, 8), np.uint8)))
    struct.pack_into(">II", data, 16, 40000, 40000)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _mode_image(mode) -> bytes:
    buf = io.BytesIO()
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8))
    if mode == "I;16":
        Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257).save(buf, format="PNG")
    else:
        rgb.convert(mode).save(buf, format="JPEG" if mode == "CMYK" else "PNG")
    return buf.getvalue()


_FP_INPUT = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}

BAD = [
    ("post", "/v1/predict", {"content": b"not an image"}, 400, "corrupt or not an image"),
    ("post", "/v1/predict", {"content": _jpeg()[:400]}, 400, "cannot read image"),
    ("post", "/v1/predict", {"content": _bomb()}, 413, "too large"),
    ("post", "/v1/predict", {"content": b""}, 400, "no image"),
    ("post", "/v1/predict?topk=0", {"content": b"x"}, 400, "topk must be between 1 and 10"),
    ("post", "/v2/models/tiny/infer", {"content": b"{not json"}, 400, "malformed JSON"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": []}}, 400, "exactly one tensor"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{"name": "input", "shape": [1, 3, 28, 28],
                                                            "datatype": "FP32", "data": [0.0] * 2352}]}},
     400, "does not match the model's"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{"name": "input", "shape": [1, 1, 28, 28],
                                                            "datatype": "INT8", "data": [0] * 784}]}},
     400, "datatype must be FP32"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{"name": "input", "shape": [1, 1, 28, 28],
                                                            "datatype": "FP32", "data": [0.0] * 5}]}},
     400, "has 5 values"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                                            "data": ["***"]}]}}, 400, "not valid base64"),
    # round 2 (issue 20): every one of these was a 500 or a silent 200
    ("post", "/v2/models/tiny/infer", {"content": b"[" * 100_000 + b"]" * 100_000}, 400, "nested too deeply"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{**_FP_INPUT, "parameters": [1, 2]}]}}, 400,
     "must be an object"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{**_FP_INPUT, "shape": [2 ** 62, 2 ** 62, 28, 28]}]}},
     413, "more than"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{**_FP_INPUT, "parameters": {"binary_data_size": 1.5}}]}},
     400, "binary_data_size must be a non-negative integer"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{**_FP_INPUT, "name": "nope"}]}}, 400, "unknown input 'nope'"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [_FP_INPUT], "outputs": [{"name": "probs"}]}}, 400,
     "unknown output 'probs'"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [_FP_INPUT], "outputs": [
        {"name": "logits", "parameters": {"class_count": 3}}]}}, 400, "class_count"),
    ("post", "/v2/models/tiny/infer", {"json": {"inputs": [{"name": "image_bytes", "shape": [5], "datatype": "BYTES",
                                                            "data": ["AAAA", "AAAA"]}]}}, 400, "holds 2 element"),
    ("get", "/nope", {}, 404, "no such path"),
    ("get", "/v1/predict", {}, 405, "not allowed"),
    ("post", "/v1/predict?topk=abc", {"content": b"x"}, 400, "topk must be between 1 and 10"),
    ("get", "/v2/models/tiny/versions/2", {}, 404, "unknown version '2'"),
    ("post", "/v1/predict", {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data"}}, 400,
     "malformed multipart body: "),
    ("post", "/v2/models/nope/infer", {"json": {}}, 404, "unknown model 'nope'"),
    ("post", "/v1/predict", {"content": b"x" * (3 * 1024 * 1024)}, 413, "exceeds"),
    ("post", "/v2/models/tiny/infer", {"content": b"{}", "headers": {"Inference-Header-Content-Length": "99"}},
     400, "does not fit"),
]


@pytest.mark.parametrize("method,path,kw,status,needle", BAD, ids=[f"{b[1]}-{b[4]}" for b in BAD])
def test_bad_input_is_a_json_4xx_and_the_server_carries_on(server, method, path, kw, status, needle):
    c = httpx.Client(base_url=server.url)
    r = getattr(c, method)(path, **kw)
    assert r.status_code == status and needle in r.json()["error"], r.text
    assert c.post("/v1/predict", content=images(1)[0]).status_code == 200


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "RGBA", "P", "1"])
def test_unusual_image_modes_simply_work(server, mode):
    r = httpx.post(f"{server.url}/v1/predict", content=_mode_image(mode))
    assert r.status_code == 200 and len(r.json()["predictions"][0]) == 5


def test_one_pixel_image_works(server):
    assert httpx.post(f"{server.url}/v1/predict", content=png(np.zeros((1, 1), np.uint8))).status_code == 200


def test_api_key_is_required_when_set(onnx_model, monkeypatch):
    monkeypatch.setenv("SQZ_KEY", "s3cret")
    with Server(ServeConfig(str(onnx_model), api_key_env="SQZ_KEY")) as s:
        img = images(1)[0]
        assert httpx.post(f"{s.url}/v1/predict", content=img).status_code == 401
        assert httpx.post(f"{s.url}/v1/predict", content=img, headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.post(f"{s.url}/v1/predict", content=img, headers={"X-API-Key": "s3cret"}).status_code == 200
        ok = httpx.post(f"{s.url}/v1/predict", content=img, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and httpx.get(f"{s.url}/v2/health/live").status_code == 200


def test_secure_defaults_are_refused_to_be_loosened_by_accident(onnx_model, monkeypatch):
    monkeypatch.delenv("SQUEEZENET_SERVE_PUBLIC", raising=False)
    with pytest.raises(SqueezeNetError, match="would expose the server"):
        ServeConfig(str(onnx_model), host="0.0.0.0").validate()
    with pytest.raises(SqueezeNetError, match="environment variable is empty"):
        ServeConfig(str(onnx_model), api_key_env="SQZ_UNSET_VARIABLE").validate()
    with Server(ServeConfig(str(onnx_model))) as s:  # CORS off unless asked
        r = httpx.options(f"{s.url}/v1/predict", headers={"Origin": "http://evil.example",
                                                           "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers


async def _fire(url, bodies, concurrency):
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        async def one(b):
            async with sem:
                return await c.post("/v1/predict?topk=1", content=b)
        return await asyncio.gather(*(one(b) for b in bodies))


def _metric(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return 0.0


def test_micro_batching_and_backpressure(onnx_model):
    with Server(ServeConfig(str(onnx_model), max_batch=16, max_wait_ms=20)) as s:
        rs = asyncio.run(_fire(s.url, images(48), 24))
        assert all(r.status_code == 200 for r in rs)
        text = httpx.get(f"{s.url}/metrics").text
        batches = _metric(text, "squeezenet_batch_size_count")
        assert 0 < batches < 48  # several requests shared an ONNX Runtime call
    with Server(ServeConfig(str(onnx_model), max_batch=1, max_queue=2, max_wait_ms=0)) as s:
        rs = asyncio.run(_fire(s.url, images(40) * 2, 40))
        busy = [r for r in rs if r.status_code == 503]
        assert busy and all(r.headers.get("retry-after") == "1" for r in busy)
        assert all(r.status_code in (200, 503) for r in rs)
        assert httpx.post(f"{s.url}/v1/predict", content=images(1)[0]).status_code == 200


def test_fault_mix_loses_no_valid_answer_and_metrics_count_what_was_sent(onnx_model, reference):
    """A bounded mix of 1,000 malformed and 200 valid requests, fired concurrently."""
    import psutil

    rng = np.random.default_rng(7)
    valid = images(200, seed=11)
    good = png(np.zeros((28, 28), np.uint8))
    malformed = []
    for i in range(1000):
        b = bytearray(good)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        malformed.append(bytes(b[: int(rng.integers(8, len(b)))]) if i % 2 else b"garbage" * int(rng.integers(1, 50)))
    order = rng.permutation(1200)
    bodies = [(valid + malformed)[i] for i in order]
    want = [w[0][0] for w in reference.predict(valid, topk=1)]
    with Server(ServeConfig(str(onnx_model), max_queue=4096)) as s:
        rss0 = psutil.Process().memory_info().rss
        rs = asyncio.run(_fire(s.url, bodies, 32))
        rss1 = psutil.Process().memory_info().rss
        by_body = dict(zip(map(id, bodies), rs))
        for v, w in zip(valid, want):
            r = by_body[id(v)]
            assert r.status_code == 200 and r.json()["predictions"][0][0]["class"] == w
        codes = [r.status_code for r in rs]
        assert all(c in (200, 400, 413) for c in codes) and codes.count(200) >= 200
        text = httpx.get(f"{s.url}/metrics").text
        ok = _metric(text, "squeezenet_requests_total", '{route="/v1/predict",status="200"}')
        bad = _metric(text, "squeezenet_requests_total", '{route="/v1/predict",status="400"}')
        assert ok == codes.count(200) and bad == codes.count(400)
        assert rss1 - rss0 < 200 * 2 ** 20  # bounded (the server shares this process)


def test_sigterm_drains_in_flight_requests(onnx_model):
    """`squeezenet serve` as users run it: requests waiting in a batch when SIGTERM arrives
    are all answered, then the process exits by itself."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "squeezenet", "serve", str(onnx_model), "--port", str(port),
                             "--max-wait-ms", "400", "--max-batch", "64"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        from squeezenet.serve import wait_until_ready

        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, proc)
        results = []
        t = threading.Thread(target=lambda: results.extend(asyncio.run(_fire(url, images(16), 16))))
        t.start()
        time.sleep(0.25)  # the requests are in the server, waiting for their batch
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert len(results) == 16 and all(r.status_code == 200 for r in results)
        assert proc.wait(30) == 0  # a clean drain exits 0 (uvicorn alone would re-raise SIGTERM: -15)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_page_in_a_real_browser(server, reference, tmp_path):
    """Headless Chromium from Debian (chromium + chromium-driver): upload an image on the page
    and read the top-5 it shows; they are the in-process predictions."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver")
    driver_path = shutil.which("chromedriver")
    if not driver_path or not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,700"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    img = tmp_path / "shoe.png"
    img.write_bytes(images(1, seed=42)[0])
    ranked = reference.predict([img.read_bytes()], topk=10)[0]
    prob = dict(ranked)
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        drv.set_page_load_timeout(30)
        drv.get(server.url + "/")
        inp = drv.find_element(By.ID, "file")
        drv.execute_script("arguments[0].hidden = false;", inp)
        inp.send_keys(str(img))
        WebDriverWait(drv, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#result .row")) == 5)
        rows = drv.find_elements(By.CSS_SELECTOR, "#result .row")
        names = [r.find_element(By.CLASS_NAME, "name").text for r in rows]
        pcts = [float(r.find_element(By.CLASS_NAME, "pct").text.rstrip("%")) for r in rows]
        assert pcts == pytest.approx([100 * prob[n] for n in names], abs=0.006)  # each class's own probability
        assert pcts == sorted(pcts, reverse=True)  # the top 5, in order (near-ties may swap places)
        assert pcts[-1] == pytest.approx(100 * ranked[4][1], abs=0.006)
        drv.save_screenshot(str(tmp_path / "page.png"))
        import os

        if os.environ.get("SQUEEZENET_SCREENSHOT"):  # how docs/img/serve_page.png is made
            shutil.copy(tmp_path / "page.png", os.environ["SQUEEZENET_SCREENSHOT"])
    finally:
        drv.quit()


def test_int8_backend_quantizes_at_start_and_agrees_with_fp32(onnx_model, reference, tmp_path):
    from squeezenet.serve import load_classifier

    for i, b in enumerate(images(40, seed=9)):
        (tmp_path / f"{i}.png").write_bytes(b)
    with pytest.raises(SqueezeNetError, match="needs --calib-dir"):
        load_classifier(str(onnx_model), None, True, "ort-int8")
    q = load_classifier(str(onnx_model), None, True, "ort-int8", str(tmp_path))
    x = reference.preprocess(images(16, seed=10))
    agree = (q.run(x).argmax(1) == reference.run(x).argmax(1)).mean()
    assert agree >= 0.9 and "int8" in q.path
    with Server(ServeConfig(str(q.path), backend="ort-int8")) as s:  # an int8 file is served as it is
        r = httpx.post(f"{s.url}/v1/predict", content=images(1)[0])
        assert r.status_code == 200


def test_int8_backend_refuses_a_model_quantized_otherwise(onnx_model, tiny_run, fmnist_dir, tmp_path):
    """--backend ort-int8 quantized every file without QuantizeLinear nodes again at start:
    a low-bit file with float activations (its INT4 weights behind DequantizeLinear) was
    re-quantized by ONNX Runtime's int8 quantizer, so the server answered with other
    numbers than the file's, and an fp16 file went the same way. Both are now refused in
    one line; an int8 file is served as it is (the test above)."""
    from helpers import run_cli
    from squeezenet.deploy.onnx_tools import convert_fp16
    from squeezenet.serve import load_classifier

    code, _, err = run_cli("quantize", "-c", tiny_run / "best.pt", "--data-dir", fmnist_dir, "--no-download",
                           "--out", tmp_path / "w4", "--weight-bits", "4", "--act-bits", "32", "--calib-size", "64",
                           "--rounding", "nearest")
    assert code == 0, err
    w4 = json.loads(next((tmp_path / "w4").glob("lowbit_report_*.json")).read_text())["files"]["onnx"]
    for f, kind in ((w4, "low-bit or int8 weights, float activations"),
                    (convert_fp16(onnx_model, tmp_path / "h.onnx"), "fp16")):
        with pytest.raises(SqueezeNetError, match=f"already quantized \\({kind}\\); --backend ort-int8 would"):
            load_classifier(str(f), None, True, "ort-int8", str(tmp_path))
        assert load_classifier(str(f), None, True, "ort").path == str(f)  # served as it is on --backend ort


@pytest.mark.parametrize("name", ["squeezenet1_1_small_bn_w0.25", "squeezenet1_1_complex_bypass_small_bn_w0.25",
                                  "squeezenet1_0_simple_bypass_sr0.25_pct0.25_w0.25", "squeezenet1_0_caffe_w0.25"])
def test_sqz_to_onnx_without_torch_matches_the_torch_model(name, tmp_path):
    """A .sqz converts to ONNX with numpy + onnx only (BN folded), and gives the decoded
    PyTorch model's outputs; a subprocess with torch made unimportable proves it."""
    import json
    import os
    import subprocess
    import sys

    import torch

    from squeezenet import create_model
    from squeezenet.formats.sqz import load_container
    from squeezenet.compression.pipeline import compress
    from squeezenet.formats.onnx import open_session

    torch.manual_seed(0)
    ckpt_dir = tmp_path
    m = create_model(name, num_classes=10, in_chans=1)
    m.classifier.conv10.weight.data.normal_(0, 0.3)  # as large as the others: survives global pruning
    m.classifier.conv10.bias.data.uniform_(-0.3, 0.3)
    for mod in m.modules():  # non-trivial BN statistics, so that folding is really tested
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    from squeezenet.formats.checkpoint import make_checkpoint
    from squeezenet.files import atomic_save

    size = 64 if "caffe" not in name else 96
    spec = dict(name="x", classes=[str(i) for i in range(10)], channels=1, input_size=size, mean=[0.5], std=[0.5])
    atomic_save(make_checkpoint(m, name, spec), ckpt_dir / "m.pt")
    sqz = compress(checkpoint=str(ckpt_dir / "m.pt"), sparsity="0.5", bits=6, out=str(tmp_path / "m.sqz"),
                   evaluate_data=False)["path"]
    code = ("import sys; sys.modules['torch'] = None\n"
            "from squeezenet.deploy.sqz_onnx import sqz_to_onnx\n"
            f"sqz_to_onnx({sqz!r}, {str(tmp_path / 'm.onnx')!r})\n"
            "from squeezenet.deploy import load\n"
            f"print(load({str(tmp_path / 'm.onnx')!r}).classes[:2])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().replace("'", '"')) == ["0", "1"]
    ref, _ = load_container(sqz)
    x = torch.randn(3, 1, size, size)
    with torch.no_grad():
        want = ref.eval()(x).numpy()
    sess = open_session(tmp_path / "m.onnx", verify=True)
    got = sess.run(None, {"input": x.numpy()})[0]
    assert abs(got - want).max() <= 1e-4 * max(1.0, abs(want).max())


def test_serving_a_sqz_file(tiny_run, tmp_path):
    from squeezenet.compression.pipeline import compress
    from squeezenet.serve import load_classifier

    sqz = compress(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "t.sqz"), evaluate_data=False)["path"]
    clf = load_classifier(sqz, None, True)
    assert clf.path.endswith(".onnx") and clf.classes[0] == "T-shirt/top" and clf.spec.input_size == 28
    with Server(ServeConfig(sqz)) as s:
        assert httpx.get(f"{s.url}/v2/models/t").json()["name"] == "t"
        assert httpx.post(f"{s.url}/v1/predict", content=images(1)[0]).status_code == 200


def _read_until_closed(sock, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    got = b""
    sock.settimeout(limit_s)
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return got, time.monotonic()
        got += chunk


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_slow_or_stalled_clients_are_cut_off_and_others_are_served(onnx_model, parser, monkeypatch):
    """slowloris: a client that never finishes its headers, or its body, is answered 408 and
    closed at the deadline instead of holding a connection for ever; one that connects and
    says nothing is closed; a normal keep-alive client is unaffected meanwhile. Under both
    of uvicorn's HTTP parsers (httptools is installed with the extra; h11 is its fallback)."""
    import socket

    from squeezenet.serve import app as app_module
    from squeezenet.serve.connection import header_timeout_protocol

    if parser == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        monkeypatch.setattr(app_module, "http_protocol", lambda t: header_timeout_protocol(H11Protocol, t))

    cfg = ServeConfig(str(onnx_model), header_timeout_s=0.5, read_timeout_s=0.5)
    with Server(cfg) as s:
        def connect():
            return socket.create_connection(("127.0.0.1", s.port), timeout=10)

        stalled_headers, idle, stalled_body = connect(), connect(), connect()
        stalled_headers.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")  # no blank line: never ends
        sent = time.monotonic()
        stalled_body.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                             b"Content-Length: 1000\r\n\r\n" + b"\x89PNG")  # 4 of 1,000 bytes
        with httpx.Client(base_url=s.url) as client:  # one keep-alive connection, served throughout
            for _ in range(3):
                assert client.get("/v2/health/ready").status_code == 200
                time.sleep(0.2)  # under the deadline between requests: the connection stays usable
        reply, closed = _read_until_closed(stalled_headers, 10)
        assert reply.startswith(b"HTTP/1.1 408") and b"headers did not arrive within 0.5 s" in reply
        assert 0.3 < closed - sent < 5
        reply, _ = _read_until_closed(idle, 10)
        assert reply == b""  # nothing was asked, nothing is answered: just closed
        reply, _ = _read_until_closed(stalled_body, 10)
        assert b" 408 " in reply.split(b"\r\n")[0] and b"body did not arrive within 0.5 s" in reply
        for sock in (stalled_headers, idle, stalled_body):
            sock.close()
        with httpx.Client(base_url=s.url) as client:
            assert client.get("/v2/health/ready").status_code == 200


def test_int8_calibration_images_come_from_every_folder(tmp_path):
    """--calib-dir on a class tree: the 256 calibration images are taken round-robin over
    its folders, not the first 256 files in sorted order (here all of class a)."""
    from squeezenet.serve.app import calibration_files

    for cls, n in (("a", 300), ("b", 2), ("c", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            (tmp_path / cls / f"{i:03d}.png").touch()
    (tmp_path / "notes.txt").touch()
    files = calibration_files(str(tmp_path))
    by_folder = {d: sum(f.parent.name == d for f in files) for d in "abc"}
    assert len(files) == 256 and by_folder == {"a": 251, "b": 2, "c": 3}

