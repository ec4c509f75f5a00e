"""The Open Inference Protocol v2 (KServe / Triton) as pure functions: a request body in,
arrays out, or an :class:`HTTPError` naming what is wrong (always a 4xx).

Inputs: one tensor, either FP32/FP16/FP64 NCHW (already preprocessed; its name is the
model's input name) or BYTES holding encoded images (named ``image_bytes``), in JSON or
with Triton's binary-data extension (``Inference-Header-Content-Length``). Outputs: only
``logits``; the classification extension (``class_count``) is refused, not ignored.
"""

from __future__ import annotations

import base64
import json
import math
import struct

import numpy as np

DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}
BYTES_INPUT = "image_bytes"
OUTPUT = "logits"
MAX_ELEMENTS = 64 * 3 * 1024 * 1024


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def parse_infer_request(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """(JSON header, binary tail) of a v2 infer request, JSON or binary-data extension."""
    if header_length is not None:
        if not header_length.isdigit():
            raise HTTPError(400, "Inference-Header-Content-Length is not an integer")
        n = int(header_length)
        if not 0 < n <= len(body):
            raise HTTPError(400, f"Inference-Header-Content-Length {n} does not fit the {len(body)}-byte body")
        head, tail = body[:n], body[n:]
    else:
        head, tail = body, b""
    try:
        req = json.loads(head)
    except RecursionError:
        raise HTTPError(400, "malformed JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise HTTPError(400, f"malformed JSON: {str(e)[:80]}") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or len(req["inputs"]) != 1 \
            or not isinstance(req["inputs"][0], dict):
        raise HTTPError(400, "the request must have 'inputs' with exactly one tensor")
    _check_parameters(req, "the request")
    _check_outputs(req)
    return req, tail


def _check_parameters(obj: dict, where: str) -> dict:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise HTTPError(400, f"'parameters' of {where} must be an object, got {type(params).__name__}")
    if "classification" in params or "class_count" in params:
        raise HTTPError(400, "the classification extension (class_count) is not supported; ask for 'logits' or use "
                             "/v1/predict?topk=K")
    return params


def _check_outputs(req: dict) -> None:
    outputs = req.get("outputs")
    if outputs is None:
        return
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise HTTPError(400, "'outputs' must be a list of objects")
    for o in outputs:
        if o.get("name") != OUTPUT:
            raise HTTPError(400, f"unknown output {o.get('name')!r}; this model has one output, '{OUTPUT}'")
        _check_parameters(o, f"output '{OUTPUT}'")


def _binary_size(params: dict, tail: bytes) -> int | None:
    size = params.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise HTTPError(400, f"binary_data_size must be a non-negative integer, got {size!r}")
    if size > len(tail):
        raise HTTPError(400, f"binary_data_size {size} exceeds the {len(tail)} bytes after the JSON header")
    return size


def _shape(inp: dict, rank: int | None) -> list[int]:
    shape = inp.get("shape")
    if not isinstance(shape, list) or not shape or (rank is not None and len(shape) != rank) or \
            not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        want = "[B, C, H, W]" if rank == 4 else "a list of positive integers"
        raise HTTPError(400, f"input shape must be {want} with positive sizes, got {shape!r}")
    if math.prod(shape) > MAX_ELEMENTS:
        raise HTTPError(413, f"input shape {shape} holds more than {MAX_ELEMENTS:,} values")
    return shape


def bytes_elements(inp: dict, tail: bytes) -> list[bytes]:
    """BYTES tensor elements: binary (4-byte little-endian length prefixes) or JSON
    strings (base64); their count must equal the product of the shape."""
    params = _check_parameters(inp, f"input '{inp.get('name')}'")
    shape = _shape(inp, None)
    size = _binary_size(params, tail)
    if size is not None:
        buf, out, i = tail[:size], [], 0
        while i < len(buf):
            if i + 4 > len(buf):
                raise HTTPError(400, "truncated BYTES element")
            (n,) = struct.unpack_from("<I", buf, i)
            if i + 4 + n > len(buf):
                raise HTTPError(400, "truncated BYTES element")
            out.append(buf[i + 4:i + 4 + n])
            i += 4 + n
    else:
        data = inp.get("data")
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            raise HTTPError(400, "BYTES input 'data' must be a list of base64 strings")
        try:
            out = [base64.b64decode(d, validate=True) for d in data]
        except ValueError:
            raise HTTPError(400, "BYTES input 'data' is not valid base64") from None
    if len(out) != math.prod(shape):
        raise HTTPError(400, f"BYTES input has shape {shape} but holds {len(out)} element(s)")
    return out


def fp_tensor(inp: dict, tail: bytes, want: list) -> np.ndarray:
    """An FP tensor as float32 (B, C, H, W), checked against the model's input shape."""
    params = _check_parameters(inp, f"input '{inp.get('name')}'")
    dtype = DTYPES[inp["datatype"]]
    shape = _shape(inp, 4)
    if any(isinstance(w, int) and w > 0 and w != s for w, s in zip(want[1:], shape[1:])):
        raise HTTPError(400, f"input shape {shape} does not match the model's [B, {', '.join(map(str, want[1:]))}]")
    count = math.prod(shape)
    size = _binary_size(params, tail)
    if size is not None:
        if size != count * np.dtype(dtype).itemsize:
            raise HTTPError(400, f"binary_data_size {size} does not match shape {shape} of {inp['datatype']}")
        arr = np.frombuffer(tail[:size], dtype=dtype)
    else:
        try:
            arr = np.asarray(inp.get("data"), dtype=dtype).reshape(-1)
        except (ValueError, TypeError, OverflowError):
            raise HTTPError(400, "input 'data' is not a list of numbers") from None
        if arr.size != count:
            raise HTTPError(400, f"input 'data' has {arr.size} values, shape {shape} needs {count}")
    arr = arr.astype(np.float32).reshape(shape)
    if not np.isfinite(arr).all():
        raise HTTPError(400, "input holds NaN or inf")
    return arr


def check_input(inp: dict, input_name: str) -> str:
    """The input's datatype, after checking its name against the model's inputs."""
    dtype = inp.get("datatype")
    if dtype not in ("BYTES", *DTYPES):
        raise HTTPError(400, f"input datatype must be FP32 (NCHW) or BYTES (encoded images), got {dtype!r}")
    want = BYTES_INPUT if dtype == "BYTES" else input_name
    if inp.get("name") != want:
        raise HTTPError(400, f"unknown input {inp.get('name')!r} for datatype {dtype}; this model takes "
                             f"'{input_name}' (FP32 NCHW) or '{BYTES_INPUT}' (BYTES, encoded images)")
    return dtype
