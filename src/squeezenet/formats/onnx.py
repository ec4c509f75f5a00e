"""Serve an exported SqueezeNet without PyTorch: numpy + pillow + onnxruntime.

The .onnx files written by ``squeezenet export`` / ``quantize`` carry the preprocessing
(classes, input size, channels, mean/std) in their metadata under the key
``squeezenet``, and a SHA-256 of the file under ``squeezenet.sha256``::

    from squeezenet.deploy import load
    clf = load("model.onnx")
    clf.predict(["shoe.png"])   # [[("Sneaker", 0.93), ...]]

Integrity: the digest is computed over the file's bytes with the digest's own 64 hex
characters zeroed, so it checks every byte that ONNX Runtime reads. Loading refuses a
file whose digest does not match, or that has none, unless ``verify=False`` (for
foreign ONNX files). Images are decoded by :mod:`squeezenet.imageio`, the same code
training used.

Install footprint: ``pip install squeezenet-toolkit[serve]`` brings onnxruntime, numpy and
pillow (about 60 MB) and no torch; import only ``squeezenet.deploy``.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..errors import SqueezeNetError
from ..imageio import model_input, normalize_array
from ..spec import IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD, IMAGENET_MEAN, IMAGENET_STD, DataSpec

META_KEY = "squeezenet"
DIGEST_KEY = "squeezenet.sha256"
# StringStringEntryProto as protobuf writes it: key (field 1), then value (field 2, 64 bytes)
_DIGEST_PATTERN = b"\x0a" + bytes([len(DIGEST_KEY)]) + DIGEST_KEY.encode() + b"\x12\x40"
DIGEST_PLACEHOLDER = b"0" * 64
MAX_ONNX_BYTES = 2 * 1024 ** 3  # protobuf's own limit


def session_options(threads: int | None = None, tuned: bool = True):
    """``threads``: intra-op threads; default the cores this process may use
    (:func:`squeezenet.machine.usable_cores`), not ONNX Runtime's own default, which counts
    the host's physical cores inside a container limited to fewer."""
    import onnxruntime as ort

    from ..machine import usable_cores

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or usable_cores()
    so.inter_op_num_threads = 1
    if tuned:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def _digest_offset(data: bytes) -> int | None:
    i = data.find(_DIGEST_PATTERN)
    if i < 0 or data.find(_DIGEST_PATTERN, i + 1) >= 0 or i + len(_DIGEST_PATTERN) + 64 > len(data):
        return None
    return i + len(_DIGEST_PATTERN)


def file_digest(data: bytes, offset: int) -> str:
    return hashlib.sha256(data[:offset] + DIGEST_PLACEHOLDER + data[offset + 64:]).hexdigest()


def stamp_digest(data: bytes) -> bytes:
    """Fill in the digest of an ONNX file saved with a placeholder digest entry."""
    off = _digest_offset(data)
    if off is None:
        raise SqueezeNetError("internal error: the ONNX file has no single digest placeholder")
    return data[:off] + file_digest(data, off).encode() + data[off + 64:]


def verify_digest(data: bytes, path) -> None:
    off = _digest_offset(data)
    if off is None:
        raise SqueezeNetError(f"'{path}' carries no squeezenet integrity digest (not exported by squeezenet, or "
                              "damaged); pass --skip-integrity-check (verify=False) to load a foreign file")
    if data[off:off + 64] != file_digest(data, off).encode():
        raise SqueezeNetError(f"'{path}' is corrupted (integrity digest mismatch); export it again")


def read_onnx(path, verify: bool = True) -> bytes:
    """The bytes of an ONNX file, integrity-checked, or a one-line error."""
    path = str(path)
    if not os.path.isfile(path):
        raise SqueezeNetError(f"ONNX file not found: '{path}'")
    if os.path.getsize(path) > MAX_ONNX_BYTES:
        raise SqueezeNetError(f"'{path}' is larger than 2 GiB; not a model this tool exports")
    with open(path, "rb") as f:
        data = f.read()
    if verify:
        verify_digest(data, path)
    return data


LOW_BIT_TYPES = ("INT4", "UINT4", "INT2", "UINT2")


def dequantize_low_bit_weights(data: bytes) -> bytes:
    """The model with every ``DequantizeLinear`` of a constant INT4/INT2 initializer
    replaced by its fp32 result, in memory. ONNX Runtime has no 4- or 2-bit convolution
    on CPU and would otherwise dequantize the weights again on every call (5x slower at
    batch 1 for the demo model); the file on disk keeps its packed integers. INT8
    weights are left alone: ORT fuses those into integer kernels."""
    if b"DequantizeLinear" not in data:
        return data
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return data
    model = onnx.load_from_string(data)
    g = model.graph
    low = {getattr(onnx.TensorProto, t) for t in LOW_BIT_TYPES}
    inits = {t.name: t for t in g.initializer}
    folded, keep = {}, []
    for node in g.node:
        src = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if src is None or src.data_type not in low or not all(i in inits for i in node.input[1:] if i):
            keep.append(node)
            continue
        q = numpy_helper.to_array(src).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zp = (numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2]
              else np.zeros_like(scale))
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        folded[node.output[0]] = ((q - zp) * scale).astype(np.float32)
    if not folded:
        return data
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input}
    kept_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits + [numpy_helper.from_array(v, k) for k, v in folded.items()])
    return model.SerializeToString()


def open_session(path, threads: int | None = None, tuned: bool = True, verify: bool = False):
    """An ORT CPU session, or a one-line error for a missing, corrupt or (with
    ``verify``) tampered file. Internal temporary files are opened unverified."""
    return session_of(read_onnx(path, verify), path, threads, tuned)


def session_of(raw: bytes, path, threads: int | None = None, tuned: bool = True):
    """:func:`open_session` on bytes already read (and checked) from ``path``: the session
    runs exactly the bytes that were checked, even if the file is replaced meanwhile."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise SqueezeNetError("onnxruntime is missing; `pip install 'squeezenet-toolkit[serve]'`") from e
    data = dequantize_low_bit_weights(raw)
    # ORT's WeightBiasQuantization would quantize those now-float weights again, per tensor at 8 bits, wherever a
    # quantized activation feeds them: other numbers than the file's (docs/BENCHMARKS.md 4.1, session 17)
    disabled = ["WeightBiasQuantization"] if data is not raw else []
    try:
        return ort.InferenceSession(data, session_options(threads, tuned), providers=["CPUExecutionProvider"],
                                    disabled_optimizers=disabled)
    except Exception as e:  # ORT raises its own exception types for bad graphs
        msg = str(e).splitlines()[0][:200]
        raise SqueezeNetError(f"cannot load ONNX model '{path}': corrupt or not an ONNX file ({msg})") from e


# int16 holds a pair of uint8 x int8 products when |weight| <= 64: 2 x 255 x 64 = 32,640 <= 32,767
INT8_PAIR_SAFE = 64


def saturating_int8_layers(data: bytes) -> list[str]:
    """The layers ONNX Runtime runs as u8s8 integer kernels (a DequantizeLinear of a uint8
    activation and of a constant INT8 weight into Conv/MatMul/Gemm, whose output only a
    QuantizeLinear reads) with a weight beyond +-64. On a CPU where
    :func:`squeezenet.machine.int8_pairs_saturate`, their int16 pair sums can overflow, and
    ONNX Runtime computes other numbers than the file's QDQ graph defines."""
    if b"DequantizeLinear" not in data or b"QuantizeLinear" not in data:
        return []
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return []
    g = onnx.load_from_string(data).graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def dequantized(name):
        n = producer.get(name)
        return n if n is not None and n.op_type == "DequantizeLinear" else None

    def int8_weight(name):
        dq = dequantized(name)
        w = inits.get(dq.input[0]) if dq is not None else None
        return w if w is not None and w.data_type == onnx.TensorProto.INT8 else None

    def uint8_activation(name) -> bool:  # QuantizeLinear's output type: its zero point's, else uint8
        dq = dequantized(name)
        q = producer.get(dq.input[0]) if dq is not None else None
        if q is None or q.op_type != "QuantizeLinear":
            return False
        if len(q.input) < 3 or not q.input[2]:
            return not any(a.name == "output_dtype" for a in q.attribute)
        zp = inits.get(q.input[2])
        return zp is not None and zp.data_type == onnx.TensorProto.UINT8

    found = []
    for n in g.node:
        if n.op_type not in ("Conv", "MatMul", "Gemm") or len(n.input) < 2:
            continue
        w = int8_weight(n.input[1])
        after = readers.get(n.output[0], [])
        if len(after) == 1 and after[0].op_type in ("Relu", "Clip"):  # ORT drops these before a QuantizeLinear
            after = readers.get(after[0].output[0], [])
        if (w is None or not uint8_activation(n.input[0])
                or len(after) != 1 or after[0].op_type != "QuantizeLinear"):
            continue
        if np.abs(numpy_helper.to_array(w).astype(np.int32)).max() > INT8_PAIR_SAFE:
            found.append(n.name or n.output[0])
    return found


def saturation_note(path, data: bytes) -> str | None:
    """A note for an int8 file (``data``: its bytes) whose numbers this CPU's ONNX Runtime
    kernels may not compute (parsed only on such a CPU)."""
    from ..machine import int8_pairs_saturate

    if not int8_pairs_saturate():
        return None
    layers = saturating_int8_layers(data)
    if not layers:
        return None
    return (f"'{path}' has int8 weights beyond +-64 in {len(layers)} layer(s), and this CPU has no VNNI: ONNX "
            "Runtime's u8s8 kernels add pairs of products in int16 here and can overflow, so its predictions may "
            "differ from the file's own numbers (95 of 2,000 top-1 classes on one model; docs/BENCHMARKS.md 3.1). "
            "Quantize it again with `squeezenet quantize`, whose weights stay within +-64")


_FLOAT_INPUTS = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxClassifier:
    """An exported classifier plus its preprocessing.

    ``verify=False`` loads a file without our digest; a file without our metadata gets
    defaults (input size and channels from the graph, ImageNet mean/std, class
    indices as names), listed in ``notes``.
    """

    def __init__(self, path, threads: int | None = None, verify: bool = True):
        self.path = str(path)
        data = read_onnx(path, verify)  # read once: the session, the Softmax check and the int8 note see these bytes
        self.session = session_of(data, path, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in _FLOAT_INPUTS:
            got = ", ".join(f"'{i.name}' ({i.type})" for i in inputs) or "none"
            raise SqueezeNetError(f"'{path}' takes {got} as input; this tool feeds one batch of normalised float "
                                  "images, so it cannot run this file")
        inp = inputs[0]
        self.input_name, self.input_shape = inp.name, inp.shape  # e.g. ['batch', 1, 28, 28]
        self.input_type = _FLOAT_INPUTS[inp.type]
        self.notes: list[str] = []
        self.output_is_probability = False  # a foreign file whose graph ends in Softmax (see _read_spec)
        self.spec = self._read_spec(data)
        saturation = saturation_note(self.path, data)
        if saturation:
            self.notes.append(saturation)

    def _read_spec(self, data: bytes) -> DataSpec:
        meta = self.session.get_modelmeta().custom_metadata_map
        n_out = class_count(self.session.get_outputs()[0].shape)
        shape = self.input_shape
        chans = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else None
        where = f"'{self.path}' metadata"
        if META_KEY in meta:
            try:
                d = json.loads(meta[META_KEY])
            except ValueError as e:
                raise SqueezeNetError(f"{where}: the '{META_KEY}' entry is not valid JSON ({e})") from e
            return DataSpec.from_dict(d, where, n_out if isinstance(n_out, int) else None, chans)
        size = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else None
        if chans not in (1, 3) or size is None or not isinstance(n_out, int):
            raise SqueezeNetError(f"'{self.path}' has no squeezenet metadata and its input {shape} is not a fixed "
                                  "(B, 1|3, H, W) image; preprocess yourself and call run()")
        from ..sources import SMALL_IMAGE_MAX

        self.output_is_probability = ends_in_softmax(data, self.path)
        if self.output_is_probability:
            self.notes.append(f"'{self.path}' ends in a Softmax: its outputs are read as probabilities (their log "
                              "as logits), not passed through a second softmax")

        small = size <= SMALL_IMAGE_MAX  # above it, ImageNet's evaluation: shorter side to 256/224, centre crop
        self.notes.append(f"'{self.path}' has no squeezenet metadata (classes, mean/std): using ImageNet mean/std, "
                          f"{size} px from the graph" + ("" if small else " (images resized to 256/224 of it and "
                          "centre-cropped, as ImageNet evaluates)") + " and class indices as names")
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if chans == 3 else (IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD)
        return DataSpec("unknown", [f"class {i}" for i in range(n_out)], chans, size, list(mean), list(std),
                        small=small)

    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a preprocessed (B, C, H, W) float batch."""
        want = self.input_shape
        if x.ndim != 4 or any(isinstance(w, int) and w != g for w, g in zip(want[1:], x.shape[1:])):
            raise SqueezeNetError(f"input has shape {tuple(x.shape)} but the model expects "
                                  f"(B, {', '.join(map(str, want[1:]))}); resize to the exported input size")
        if x.shape[0] == 0:
            raise SqueezeNetError("no images to run")
        fixed = want[0] if isinstance(want[0], int) and want[0] > 0 else None
        if fixed and fixed != x.shape[0]:  # a fixed-batch export: run it chunk by chunk, zero-padding the last
            n = x.shape[0]
            pad = (-n) % fixed
            if pad:
                x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            out = np.concatenate([self._session_run(x[i:i + fixed]) for i in range(0, len(x), fixed)])[:n]
        else:
            out = self._session_run(x)
        out = out.reshape(len(out), -1)  # (B, K, 1, 1) from a graph that ends in a 1x1 convolution or pool
        if not np.isfinite(out).all():
            raise SqueezeNetError(f"'{self.path}' produced NaN/inf outputs; its weights are broken, export it again")
        if self.output_is_probability:  # softmax(log p) = p: every caller may treat the outputs as logits
            check_probabilities(out, self.path)
            out = np.log(np.maximum(out, np.finfo(np.float32).tiny))
        return out

    def _session_run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x.astype(self.input_type, copy=False)})[0].astype(np.float32)

    def preprocess(self, images) -> np.ndarray:
        """Paths (or encoded bytes) -> the normalised (B, C, H, W) batch training saw."""
        s = self.spec
        arrays = [model_input(p, s) for p in images]
        return normalize_array(np.stack(arrays), s.mean, s.std)

    def predict(self, images, topk: int = 5) -> list[list[tuple[str, float]]]:
        if topk < 1:
            raise SqueezeNetError(f"topk must be >= 1, got {topk}")
        return top_k(softmax(self.run(self.preprocess(images))), topk, self.classes)


def class_count(shape) -> int | str | None:
    """The class count of an output of ``shape``: (B, K), or (B, K, 1, 1) from a graph that
    ends in a 1x1 convolution or a global pool (the ONNX model zoo's SqueezeNet)."""
    if len(shape) == 4 and list(shape[2:]) == [1, 1]:
        return shape[1]
    return shape[-1] if shape else None


# operators that move or relabel values without changing them
_PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast")


def ends_in_softmax(data: bytes, path="the file") -> bool:
    """Whether the graph's first output is a Softmax's (behind reshapes): probabilities, not
    logits. A Softmax over another axis than the classes' (axis 1 of (B, K) or (B, K, 1, 1):
    over the batch, or over a 1x1 map, which makes every output 1) gives no class
    probabilities, and the file is refused. False when onnx is not installed (then the
    outputs are taken as logits)."""
    if b"Softmax" not in data:
        return False
    try:
        import onnx
    except ImportError:
        return False
    m = onnx.load_from_string(data)
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    node = producer.get(g.output[0].name) if g.output else None
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Softmax":
        return False
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1 if opset < 13 else -1)
    rank = _rank(m, node.input[0])
    if rank is not None and (axis + rank if axis < 0 else axis) != 1:
        raise SqueezeNetError(f"'{path}' ends in a Softmax over axis {axis} of a {rank}-d tensor, not over the classes "
                              "(axis 1), so its outputs are not class probabilities; export it without that Softmax "
                              "(or with one over axis 1)")
    return True


def check_probabilities(out: np.ndarray, path) -> None:
    """Refuse (B, K) outputs read as class probabilities that are not: a row below 0 or not
    summing to 1 (fp16 round-off allowed). The load-time axis check cannot see a Softmax
    whose input rank shape inference does not know; its outputs are checked here."""
    sums = out.sum(1)
    if (out < 0).any() or not np.allclose(sums, 1.0, rtol=0, atol=1e-2):
        bad = sums[np.argmax(np.abs(sums - 1.0))]
        raise SqueezeNetError(f"'{path}' ends in a Softmax, but its outputs are not probabilities over the classes "
                              f"(a row sums to {bad:.4g}, not 1): the Softmax is over another axis; export it "
                              "without that Softmax (or with one over axis 1)")


def _rank(m, name: str) -> int | None:
    """The rank of tensor ``name`` in model ``m`` (ONNX shape inference), or None if unknown."""
    import onnx

    try:
        g = onnx.shape_inference.infer_shapes(m).graph
    except Exception:  # inference is best effort: a graph it cannot follow keeps the old reading
        return None
    for vi in (*g.value_info, *g.input, *g.output):
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            return len(vi.type.tensor_type.shape.dim)
    return None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, K) logits, computed stably in float32."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def top_k(probs: np.ndarray, k: int, classes: list[str]) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable (class name, probability) per row; ties keep class order."""
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(classes[i], float(p[i])) for i in row] for row, p in zip(idx, probs)]
