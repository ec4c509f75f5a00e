"""The .sqz container: a versioned, checksummed file holding a compressed model.

Layout (all integers little-endian)::

    b"SQZ\\x00"  magic
    u16          format version (1)
    u32          length H of the header
    H bytes      zlib-compressed JSON header: model name and options, data spec, and
                 per tensor its shape, encoding, and the offsets of its streams
    payload      codebooks (fp32), Huffman code lengths (u8), Huffman streams, raw fp32
    32 bytes     SHA-256 of everything before it

Tensors are ``shared`` (a pruned, k-means-shared conv/linear weight: codebook +
Huffman-coded cluster indices + Huffman-coded relative gaps, or no gaps when dense),
``intq`` (uniformly quantized weights, version 2: a fp32 step per output channel and
the integers packed ``bits`` each, two's complement, as ONNX packs INT4/INT2; version 3
adds the sparse form of a pruned layer: Huffman-coded relative gaps, as ``shared`` has,
and the kept integers Huffman-coded, offset by 2^(bits-1)), or
``raw`` (biases, BatchNorm parameters and buffers, stored as fp32 so decoding is
exact). A header ``act_quant`` table gives the input step and bits of every conv whose
input is quantized. Loading verifies the checksum first: a truncated or corrupted file is refused
with a one-line error, never turned into weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import SqueezeNetError
from . import encoding

MAGIC = b"SQZ\x00"
VERSION = 3  # 2 adds "intq" tensors, 3 sparse "intq" (a pruned layer); a file is written at the lowest it needs


def _index_bits_for(density: float) -> int:
    """Relative-index width by layer density (Deep Compression used 8 bits for conv and
    5 for FC layers): gaps at 25-60% density rarely exceed 15, so 4 bits need few
    escape symbols; sparser layers get 5 bits, denser ones 3."""
    if density >= 0.6:
        return 3
    if density >= 0.25:
        return 4
    return 5


class _Writer:
    def __init__(self):
        self.buf = bytearray()

    def add(self, data: bytes) -> list[int]:
        off = len(self.buf)
        self.buf += data
        return [off, len(data)]


def encode_model(model, shared: dict, model_name: str, model_kwargs: dict, data_spec: dict | None = None,
                 extra: dict | None = None, quantized: dict | None = None) -> tuple[bytes, list[dict]]:
    """Encode ``model`` (its shared layers from :func:`share.share_weights`; its uniformly
    quantized weights as ``quantized[key] = (int8 integers, fp32 step per channel, bits)``)
    into the container bytes. Returns (bytes, per-layer size rows)."""
    w = _Writer()
    tensors, rows = [], []
    sd = model.state_dict()
    shared_keys = {f"{n}.weight": n for n in shared}
    quantized = quantized or {}
    for key, t in sd.items():
        if key in quantized:
            q, step, bits, *mask = quantized[key]
            entry, row = _intq_entry(w, key, q, step, int(bits), mask[0] if mask else None)
            tensors.append(entry)
            rows.append(row)
        elif key in shared_keys:
            layer = shared[shared_keys[key]]
            mask = layer.mask.flatten().numpy()
            density = float(mask.mean())
            k = len(layer.centroids)
            w_syms = layer.labels.numpy()
            # order of labels follows mask order (row-major): that is how share_weights built them
            w_len = encoding.code_lengths(np.bincount(w_syms, minlength=k))
            entry = {"key": key, "kind": "shared", "shape": list(t.shape), "bits": layer.bits, "k": k,
                     "count": int(len(w_syms)),
                     "codebook": w.add(layer.centroids.numpy().astype("<f4").tobytes()),
                     "w_lengths": w.add(w_len.astype(np.uint8).tobytes()),
                     "w_stream": w.add(encoding.huffman_encode(w_syms, w_len))}
            idx_raw_bits = 0
            if density < 1.0:
                ib = _index_bits_for(density)
                g = encoding.encode_relative(mask, ib)
                g_len = encoding.code_lengths(np.bincount(g, minlength=1 << ib))
                entry.update(index_bits=ib, g_count=int(len(g)), g_lengths=w.add(g_len.astype(np.uint8).tobytes()),
                             g_stream=w.add(encoding.huffman_encode(g, g_len)))
                idx_raw_bits = len(g) * ib
            tensors.append(entry)
            huff = entry["w_stream"][1] + (entry["g_stream"][1] if "g_stream" in entry else 0)
            side = entry["codebook"][1] + entry["w_lengths"][1] + (entry["g_lengths"][1] if "g_lengths" in entry else 0)
            rows.append({"layer": shared_keys[key], "params": int(t.numel()), "density": density,
                         "bits": layer.bits, "index_bits": entry.get("index_bits", 0),
                         "bytes_fp32": 4 * int(t.numel()),
                         "bytes_before_huffman": int(np.ceil((len(w_syms) * layer.bits + idx_raw_bits) / 8)) + side,
                         "bytes_after_huffman": huff + side})
        else:
            arr = t.detach().cpu().numpy()
            raw_dtype = "<f4" if arr.dtype.kind == "f" else "<i8"
            tensors.append({"key": key, "kind": "raw", "shape": list(t.shape), "dtype": raw_dtype,
                            "data": w.add(arr.astype(raw_dtype).tobytes())})
            if arr.size:
                rows.append({"layer": key, "params": int(arr.size), "density": 1.0, "bits": 32, "index_bits": 0,
                             "bytes_fp32": 4 * int(arr.size), "bytes_before_huffman": arr.nbytes if raw_dtype == "<f4" else 8 * arr.size,
                             "bytes_after_huffman": arr.nbytes if raw_dtype == "<f4" else 8 * arr.size})
    version = 3 if any(t["kind"] == "intq" and "g_stream" in t for t in tensors) else 2 if quantized else 1
    header = {"format": "squeezenet-sqz", "version": version, "model_name": model_name, "model_kwargs": model_kwargs,
              "data": data_spec or {}, "tensors": tensors, **(extra or {})}
    hbytes = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    body = MAGIC + struct.pack("<HI", version, len(hbytes)) + hbytes + bytes(w.buf)
    return body + hashlib.sha256(body).digest(), rows


def _huffman_stream(w: _Writer, symbols: np.ndarray, n_symbols: int, prefix: str) -> dict:
    """Code lengths (a byte per symbol) and the Huffman stream of ``symbols``, as entry fields."""
    lengths = encoding.code_lengths(np.bincount(symbols, minlength=n_symbols))
    return {f"{prefix}_count": int(len(symbols)), f"{prefix}_lengths": w.add(lengths.astype(np.uint8).tobytes()),
            f"{prefix}_stream": w.add(encoding.huffman_encode(symbols, lengths))}


def _intq_entry(w: _Writer, key: str, q, step, bits: int, mask) -> tuple[dict, dict]:
    """A uniformly quantized weight: dense (the integers packed ``bits`` each) or, given the
    pruning ``mask``, sparse (relative gaps and the kept integers, both Huffman-coded)."""
    q = np.asarray(q)
    size = int(q.size)
    entry = {"key": key, "kind": "intq", "shape": list(q.shape), "bits": bits,
             "scale": w.add(np.asarray(step, "<f4").tobytes())}
    row = {"layer": key.rsplit(".", 1)[0], "params": size, "density": 1.0, "bits": bits, "index_bits": 0,
           "bytes_fp32": 4 * size}
    if mask is None:
        entry["data"] = w.add(encoding.pack_signed(q, bits))
        nbytes = entry["scale"][1] + entry["data"][1]
        return entry, {**row, "bytes_before_huffman": nbytes, "bytes_after_huffman": nbytes}
    keep = np.asarray(mask, dtype=bool).reshape(-1)
    if np.any(q.reshape(-1)[~keep]):
        raise SqueezeNetError(f"internal error: '{key}' has non-zero integers where its pruning mask is 0")
    density = float(keep.mean())
    ib = _index_bits_for(density)
    gaps = encoding.encode_relative(keep, ib)
    values = q.reshape(-1)[keep].astype(np.int64) + (1 << (bits - 1))
    entry.update(index_bits=ib, **_huffman_stream(w, gaps, 1 << ib, "g"), **_huffman_stream(w, values, 1 << bits, "v"))
    side = entry["scale"][1] + entry["g_lengths"][1] + entry["v_lengths"][1]
    return entry, {**row, "density": density, "index_bits": ib,
                   "bytes_before_huffman": side + math.ceil((len(gaps) * ib + len(values) * bits) / 8),
                   "bytes_after_huffman": side + entry["g_stream"][1] + entry["v_stream"][1]}


MAX_HEADER_BYTES = 16 * 1024 * 1024  # decompressed JSON header
MAX_TENSOR_ELEMENTS = 64 * 1024 * 1024


def read_raw(path) -> tuple[dict, bytes]:
    p = Path(path)
    if not p.is_file():
        raise SqueezeNetError(f"container not found: '{path}'")
    data = p.read_bytes()
    if len(data) < 42 or data[:4] != MAGIC:
        raise SqueezeNetError(f"'{path}' is not a .sqz container (bad magic); was it written by `squeezenet compress`?")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise SqueezeNetError(f"'{path}' is corrupted or truncated (checksum mismatch); re-create it with "
                              "`squeezenet compress`")
    version, hlen = struct.unpack("<HI", body[4:10])
    if version > VERSION:
        raise SqueezeNetError(f"'{path}' is container version {version}; this squeezenet reads up to {VERSION}; upgrade")
    if version < 1:
        raise SqueezeNetError(f"'{path}': header field 'version' is {version}, not a valid container version")
    if 10 + hlen > len(body):
        raise SqueezeNetError(f"'{path}': header length {hlen} runs past the end of the file ({len(body)} bytes)")
    try:
        d = zlib.decompressobj()
        raw = d.decompress(body[10:10 + hlen], MAX_HEADER_BYTES)
        if d.unconsumed_tail:
            raise SqueezeNetError(f"'{path}': the header decompresses to more than {MAX_HEADER_BYTES:,} bytes")
        header = json.loads(raw)
    except (zlib.error, ValueError, RecursionError) as e:
        raise SqueezeNetError(f"'{path}': the header is not valid compressed JSON ({type(e).__name__})") from e
    payload = body[10 + hlen:]
    _check_header(header, payload, f"'{path}'")
    return header, payload


def _is_int(v, lo=0, hi=None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


def _check_header(h, payload: bytes, where: str) -> None:
    """Every field a decoder reads, checked against the file before anything is allocated."""
    def bad(field, want, tensor=None):
        at = f"tensor '{tensor}' " if tensor is not None else ""
        return SqueezeNetError(f"{where}: {at}field '{field}' {want}; the container was edited or is damaged")

    payload_len = len(payload)
    if not isinstance(h, dict) or h.get("format") != "squeezenet-sqz":
        raise bad("format", "is not 'squeezenet-sqz'")
    if not isinstance(h.get("model_name"), str):
        raise bad("model_name", "is not a model name")
    if not isinstance(h.get("model_kwargs"), dict):
        raise bad("model_kwargs", "is not a table of options")
    if not isinstance(h.get("data", {}), dict):
        raise bad("data", "is not a table")
    if not isinstance(h.get("tensors"), list) or not h["tensors"]:
        raise bad("tensors", "is not a non-empty list")
    seen = set()

    def ref(t, field, key, nbytes=None):
        r = t.get(field)
        if not (isinstance(r, list) and len(r) == 2 and _is_int(r[0]) and _is_int(r[1]) and r[0] + r[1] <= payload_len):
            raise bad(field, f"is not an [offset, length] inside the {payload_len:,}-byte payload", key)
        if nbytes is not None and r[1] != nbytes:
            raise bad(field, f"has {r[1]} bytes, {nbytes} expected", key)

    def lengths(t, field, key, n):
        ref(t, field, key, n)
        off, _ = t[field]
        return np.frombuffer(payload, np.uint8, n, off)

    for t in h["tensors"]:
        key = t.get("key") if isinstance(t, dict) else None
        if not isinstance(key, str) or key in seen:
            raise bad("key", "is missing or repeated")
        seen.add(key)
        shape = t.get("shape")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(v, 0, MAX_TENSOR_ELEMENTS) for v in shape):
            raise bad("shape", "is not a list of sizes", key)
        size = int(np.prod(shape)) if shape else 1
        if size > MAX_TENSOR_ELEMENTS:
            raise bad("shape", f"holds {size:,} elements (limit {MAX_TENSOR_ELEMENTS:,})", key)
        if t.get("kind") == "raw":
            if t.get("dtype") not in ("<f4", "<i8"):
                raise bad("dtype", "is not <f4 or <i8", key)
            ref(t, "data", key, size * np.dtype(t["dtype"]).itemsize)
        elif t.get("kind") == "intq":
            if t.get("bits") not in (2, 4, 8):
                raise bad("bits", "is not 2, 4 or 8", key)
            if not shape:
                raise bad("shape", "has no output-channel axis", key)
            ref(t, "scale", key, 4 * shape[0])
            if "g_stream" not in t:
                ref(t, "data", key, -(-size * t["bits"] // 8))
                continue
            if not _is_int(t.get("index_bits"), 1, 8):
                raise bad("index_bits", "is not between 1 and 8", key)
            for field, n in (("g", 1 << t["index_bits"]), ("v", 1 << t["bits"])):
                if not _is_int(t.get(f"{field}_count"), 0, size * (2 if field == "g" else 1)):
                    raise bad(f"{field}_count", "is out of range", key)
                _check_lengths(lengths(t, f"{field}_lengths", key, n), bad, f"{field}_lengths", key)
                ref(t, f"{field}_stream", key)
        elif t.get("kind") == "shared":
            if not _is_int(t.get("bits"), 1, 8):
                raise bad("bits", "is not between 1 and 8", key)
            k = t.get("k")
            if not _is_int(k, 1, 1 << t["bits"]):
                raise bad("k", f"is not between 1 and {1 << t['bits']}", key)
            ref(t, "codebook", key, 4 * k)
            if not _is_int(t.get("count"), 0, size):
                raise bad("count", f"is not between 0 and {size}", key)
            _check_lengths(lengths(t, "w_lengths", key, k), bad, "w_lengths", key)
            ref(t, "w_stream", key)
            if "g_stream" in t:
                ib = t.get("index_bits")
                if not _is_int(ib, 1, 8):
                    raise bad("index_bits", "is not between 1 and 8", key)
                if not _is_int(t.get("g_count"), 0, size):
                    raise bad("g_count", f"is not between 0 and {size}", key)
                _check_lengths(lengths(t, "g_lengths", key, 1 << ib), bad, "g_lengths", key)
                ref(t, "g_stream", key)
            elif t["count"] != size:
                raise bad("count", f"is {t['count']} but a dense tensor has {size} values", key)
        else:
            raise bad("kind", "is not 'raw', 'shared' or 'intq'", t.get("key"))
    act = h.get("act_quant", {})
    if not isinstance(act, dict) or not all(
            isinstance(v, list) and len(v) == 2 and isinstance(v[0], (int, float)) and v[0] > 0
            and math.isfinite(v[0]) and v[1] in (2, 4, 8) for v in act.values()):
        raise bad("act_quant", "is not a table of [step > 0, bits 2/4/8]")


def _check_lengths(ln: np.ndarray, bad, field, key) -> None:
    ln = ln.astype(np.int64)
    if ln.max(initial=0) > encoding.MAX_CODE_LEN:
        raise bad(field, f"has a code longer than {encoding.MAX_CODE_LEN} bits", key)
    used = ln[ln > 0]
    if used.size == 0 or float(np.sum(2.0 ** -used)) > 1.0:
        raise bad(field, "is not a valid prefix code", key)


def decode_arrays(header: dict, payload: bytes, where: str = "container") -> dict[str, np.ndarray]:
    """Every tensor of a checked container as a numpy array (no PyTorch needed)."""
    def get(ref):
        off, n = ref
        return payload[off:off + n]

    out = {}
    for t in header["tensors"]:
        shape = tuple(t["shape"])
        if t["kind"] == "raw":
            out[t["key"]] = np.frombuffer(get(t["data"]), dtype=t["dtype"]).reshape(shape).copy()
            continue
        if t["kind"] == "intq":
            try:
                q, step = intq_arrays(t, get)
            except (ValueError, IndexError, OverflowError, MemoryError) as e:
                raise SqueezeNetError(f"{where}: tensor '{t['key']}' does not decode ({str(e).splitlines()[0][:80]}); "
                                      "the container was edited or is damaged") from e
            out[t["key"]] = (q.astype(np.float32) * step.reshape((-1,) + (1,) * (len(shape) - 1))).reshape(shape)
            if not np.isfinite(out[t["key"]]).all():
                raise SqueezeNetError(f"{where}: tensor '{t['key']}' has a step that is not finite; the container "
                                      "was edited or is damaged")
            continue
        try:
            out[t["key"]] = _decode_shared(t, get, shape)
        except (ValueError, IndexError, OverflowError, MemoryError) as e:
            raise SqueezeNetError(f"{where}: tensor '{t['key']}' does not decode ({str(e).splitlines()[0][:80]}); "
                                  "the container was edited or is damaged") from e
    return out


def intq_arrays(t: dict, get) -> tuple[np.ndarray, np.ndarray]:
    """(int8 integers in the tensor's shape, fp32 step per output channel) of an intq tensor,
    dense or sparse (zeros where the layer was pruned)."""
    shape = tuple(t["shape"])
    size = int(np.prod(shape))
    step = np.frombuffer(get(t["scale"]), dtype="<f4").copy()
    if "g_stream" not in t:
        return encoding.unpack_signed(get(t["data"]), t["bits"], size).reshape(shape), step
    mask = _gap_mask(t, get, size)
    values = _symbols(t, get, "v")
    if int(mask.sum()) != len(values):
        raise ValueError(f"{int(mask.sum())} kept weights but {len(values)} integers")
    q = np.zeros(size, dtype=np.int8)
    q[mask] = (values - (1 << (t["bits"] - 1))).astype(np.int8)
    return q.reshape(shape), step


def read_container(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a .sqz file, checksum and every field verified; torch-free."""
    header, payload = read_raw(path)
    return header, decode_arrays(header, payload, f"'{path}'")


def decode_state_dict(header: dict, payload: bytes, where: str = "container") -> dict:
    import torch

    return {k: torch.from_numpy(v) for k, v in decode_arrays(header, payload, where).items()}


def _symbols(t: dict, get, field: str) -> np.ndarray:
    """The ``{field}_count`` symbols of a tensor's Huffman stream ``{field}_stream``."""
    lengths = np.frombuffer(get(t[f"{field}_lengths"]), dtype=np.uint8).astype(np.int64)
    return encoding.huffman_decode(get(t[f"{field}_stream"]), lengths, t[f"{field}_count"])


def _gap_mask(t: dict, get, size: int) -> np.ndarray:
    """The kept positions of a sparse tensor (shared or intq) from its relative gaps."""
    gaps, esc = _symbols(t, get, "g"), (1 << t["index_bits"]) - 1
    if gaps.size and gaps.max() > esc:
        raise ValueError("a gap symbol is out of range")
    if int(gaps.sum()) + int(np.count_nonzero(gaps != esc)) > size:
        raise ValueError("the gaps run past the end of the tensor")
    return encoding.decode_relative(gaps, t["index_bits"], size)


def _decode_shared(t: dict, get, shape) -> np.ndarray:
    codebook = np.frombuffer(get(t["codebook"]), dtype="<f4")
    w_len = np.frombuffer(get(t["w_lengths"]), dtype=np.uint8).astype(np.int64)
    labels = encoding.huffman_decode(get(t["w_stream"]), w_len, t["count"])
    if labels.size and labels.max() >= len(codebook):
        raise ValueError("a cluster index points past the codebook")
    size = int(np.prod(shape))
    mask = _gap_mask(t, get, size) if "g_stream" in t else np.ones(size, dtype=bool)
    if int(mask.sum()) != len(labels):
        raise ValueError(f"{int(mask.sum())} kept weights but {len(labels)} cluster indices")
    w = np.zeros(size, dtype=np.float32)
    w[mask] = codebook[labels]
    return w.reshape(shape)


def load_container(path):
    """(model, header) from a .sqz file; the model is an ordinary nn.Module."""
    from ..factory import create_model
    from ..zoo import build_any
    from .checkpoint import check_finite, load_state_dict_checked

    header, payload = read_raw(path)
    where = f"'{path}'"
    name, kwargs = header["model_name"], header["model_kwargs"]
    if name.startswith(("tv:", "timm:")):  # another library's classifier, compressed by name
        model = build_any(name, num_classes=kwargs.get("num_classes")).model
    else:
        model = create_model(name, **kwargs)
    sd = decode_state_dict(header, payload, where)
    check_finite(sd, where)
    load_state_dict_checked(model, sd, header["model_name"], where)
    attach_act_quant(model, header.get("act_quant", {}))
    return model.eval(), header


def attach_act_quant(model, act_quant: dict) -> None:
    """Quantize each named conv's input as the file says (unsigned, zero point 0, round half
    to even: what ONNX's QuantizeLinear does), so PyTorch computes what ONNX Runtime does."""
    import torch

    for name, (step, bits) in act_quant.items():
        qp = (1 << bits) - 1
        model.get_submodule(name).register_forward_pre_hook(
            lambda mod, inp, s=float(step), qp=qp: (torch.clamp(torch.round(inp[0] / s), 0, qp) * s,))
