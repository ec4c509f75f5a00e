"""ONNX file tools that need no PyTorch: our metadata and integrity digest on write
(:func:`finalize_onnx`), fp16 conversion, and ONNX Runtime's static int8 QDQ quantization
with the graph edits that make it fast and accurate on x86 (docs/BENCHMARKS.md,
sections 3-4). ``serve --backend ort-int8`` uses these in a process without torch.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..errors import SqueezeNetError, require
from ..files import atomic_write_bytes
from ..formats.onnx import DIGEST_KEY, DIGEST_PLACEHOLDER, META_KEY, open_session, stamp_digest

DEFAULT_OPSET = 18


def finalize_onnx(proto, path, metadata: dict | None = None, keep_metadata_from=None) -> Path:
    """Write ``proto`` to ``path`` atomically with our metadata (the data spec, when
    given or copied from ``keep_metadata_from``) and the integrity digest."""
    if keep_metadata_from is not None and metadata is None:
        metadata = read_metadata(keep_metadata_from)
    keep = [(e.key, e.value) for e in proto.metadata_props if e.key not in (META_KEY, DIGEST_KEY)]
    del proto.metadata_props[:]
    for k, v in keep:
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    if metadata:
        e = proto.metadata_props.add()
        e.key, e.value = META_KEY, json.dumps(metadata)
    e = proto.metadata_props.add()
    e.key, e.value = DIGEST_KEY, DIGEST_PLACEHOLDER.decode()
    atomic_write_bytes(path, stamp_digest(proto.SerializeToString()))
    return Path(path)


def read_metadata(path) -> dict | None:
    onnx = require("onnx", "onnx")
    for e in onnx.load(str(path), load_external_data=False).metadata_props:
        if e.key == META_KEY:
            return json.loads(e.value)
    return None


def convert_fp16(src, dst) -> Path:
    """fp16 weights and activations inside, fp32 input/output (keep_io_types)."""
    onnx = require("onnx", "onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(proto, keep_io_types=True)
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(half)
    wrapped.topological_sort()  # the converter appends its input casts at the end
    half = wrapped.model
    onnx.checker.check_model(half)
    return finalize_onnx(half, dst, keep_metadata_from=src)


class Calibration:
    """ONNX Runtime CalibrationDataReader over preprocessed batches."""

    def __init__(self, batches, input_name):
        self.it = iter([{input_name: b} for b in batches])

    def get_next(self):
        return next(self.it, None)

    def rewind(self):  # pragma: no cover - ORT API
        pass


def quantize_onnx_int8(fp32_path, out_path, calib: list[np.ndarray], per_channel: bool = True,
                       tune: bool = True, pad_input: bool | None = None, activations: str = "u8",
                       weights: str = "s8", reduce_range: bool = True) -> Path:
    """Static int8 QDQ quantization of an fp32 ONNX file.

    Weights are per-channel symmetric in [-64, 64] (ONNX Runtime's ``reduce_range``): on x86
    CPUs without VNNI, ONNX Runtime's u8s8 kernels add adjacent pairs of uint8 x int8
    products in saturating int16 (``vpmaddubsw``), and 255 x 127 x 2 = 64,770 overflows
    32,767 where 255 x 64 x 2 = 32,640 cannot. With the full [-127, 127] range such a CPU
    computes other numbers than the file's QDQ graph defines, and than a CPU with VNNI
    computes from the same file (docs/BENCHMARKS.md 3.1, session 30: on an AVX2 EPYC, 95 of
    2,000 top-1 classes of a briefly trained model changed, and 4 of 10,000 of the demo
    model); in [-64, 64] every CPU computes the file's own numbers, up to rounding.

    With ``tune`` (the default) three graph edits (docs/BENCHMARKS.md, sections 3-4): the
    first conv's input channels are zero-padded to a multiple of 4, which avoids int16
    saturation in ONNX Runtime's u8s8 kernels on CPUs without VNNI (see
    :func:`pad_first_conv_channels`); every Concat's inputs are given the Concat's output
    scale, so the fused QLinearConcat needs no per-input rescaling; and initializer and
    node names are shortened. ``pad_input`` (default: ``tune``) switches the padding
    alone; ``activations``/``weights`` ("u8" or "s8") and ``reduce_range=False`` are ONNX
    Runtime's options, for the comparisons in benchmarks/.
    """
    onnx = require("onnx", "onnx")
    require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    if activations not in types or weights not in types:
        raise SqueezeNetError(f"int8 types are 'u8' or 's8', got activations={activations!r} weights={weights!r}")
    out_path = Path(out_path)
    src = Path(fp32_path)
    padded = out_path.with_suffix(".pad.onnx")
    pre = out_path.with_suffix(".pre.onnx")
    try:
        if tune if pad_input is None else pad_input:
            proto = onnx.load(str(src))
            if pad_first_conv_channels(proto):
                onnx.save(proto, str(padded))
                src = padded
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        name = open_session(pre).get_inputs()[0].name
        quantize_static(str(pre), str(out_path), Calibration(calib, name), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=types[activations], weight_type=types[weights],
                        reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax)
        q = onnx.load(str(out_path))
        if tune:
            share_concat_scales(q)
            compact_names(q)
        finalize_onnx(q, out_path, keep_metadata_from=fp32_path)
    finally:
        pre.unlink(missing_ok=True)
        padded.unlink(missing_ok=True)
    return out_path


def pad_first_conv_channels(proto, multiple: int = 4) -> bool:
    """Zero-pad the graph input's channels (and the first conv's weights) to ``multiple``.

    The padded channels meet zero weights, so the conv computes the same values. Why: on
    x86 CPUs without VNNI, ONNX Runtime's u8s8 conv kernel adds adjacent pairs of
    uint8 x int8 products in saturating int16 (``vpmaddubsw``). conv1 sees raw-pixel
    activations, and with 1 or 3 input channels each pair holds two real taps, which
    saturate; padded, a real channel is paired with a zero one (fully for 1 channel, half
    the pairs for 3). Measured on the demo model: int8 top-1 92.01% -> 92.60% (fp32 92.59%).
    Only done where the graph input feeds exactly one ungrouped Conv with a 4-D weight
    initializer.
    Returns whether the graph changed."""
    from onnx import helper, numpy_helper

    g = proto.graph
    inp = g.input[0].name
    users = [n for n in g.node if inp in n.input]
    inits = {t.name: t for t in g.initializer}
    if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[1] not in inits:
        return False
    conv = users[0]
    if any(a.name == "group" and a.i != 1 for a in conv.attribute):  # grouped: channels can't grow
        return False
    w = numpy_helper.to_array(inits[conv.input[1]])
    if w.ndim != 4 or w.shape[1] % multiple == 0:
        return False
    extra = multiple - w.shape[1] % multiple
    w = np.concatenate([w, np.zeros((w.shape[0], extra, *w.shape[2:]), w.dtype)], axis=1)
    inits[conv.input[1]].CopyFrom(numpy_helper.from_array(w, conv.input[1]))
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64), "input_channel_pads")
    g.initializer.append(pads)
    padded = inp + "_channel_padded"
    conv.input[0] = padded
    g.node.insert(0, helper.make_node("Pad", [inp, pads.name], [padded], mode="constant", name="pad_input_channels"))
    return True


def share_concat_scales(proto) -> int:
    """Give every quantized Concat input the Concat output's scale and zero point.

    The inputs then need no rescaling in ONNX Runtime's fused QLinearConcat (squeezenet1_1
    at 224 px, batch 1: 629 -> 266 us of QLinearConcat per inference; docs/BENCHMARKS.md).
    The cost is precision on the input with the narrower range (for a Fire module,
    one expand branch's ReLU output is stored with the wider branch's step). Returns
    the number of inputs changed."""
    g = proto.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    changed = 0
    for n in g.node:
        after = consumers.get(n.output[0], []) if n.op_type == "Concat" else []
        if len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        scale, zero = after[0].input[1], after[0].input[2]
        for i in n.input:
            dq = producer.get(i)
            qn = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if qn is None or qn.op_type != "QuantizeLinear":
                continue
            for node in [qn] + [c for c in consumers.get(qn.output[0], []) if c.op_type == "DequantizeLinear"]:
                node.input[1], node.input[2] = scale, zero
            changed += 1
    return changed


def compact_names(proto) -> None:
    """Shorten initializer names and drop node names (optional in ONNX); activations keep
    their names so per-layer debugging still works. Saves ~30 KB in a QDQ SqueezeNet."""
    g = proto.graph
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]  # scales orphaned by share_concat_scales
    del g.initializer[:]
    g.initializer.extend(keep)
    rename = {t.name: f"c{i}" for i, t in enumerate(g.initializer)}
    for t in g.initializer:
        t.name = rename[t.name]
    for n in g.node:
        n.name = ""
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    graph_inputs = [v for v in g.input if v.name not in rename]
    del g.input[:]
    g.input.extend(graph_inputs)


_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMULS = {"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"}


_ACTIVATION_QUANT_OPS = {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
                         "DynamicQuantizeLinear"}
_WEIGHT_QUANT_OPS = {"DequantizeLinear", "MatMulNBits"}


def precision(path) -> str:
    """What an ONNX graph runs in, by its operators and initializers: "quantized
    activations" (int8 QDQ, as `squeezenet quantize` writes, or a low-bit file with
    quantized activations), "low-bit or int8 weights, float activations", "fp16" or
    "fp32". Anything but "fp32" is already quantized: quantizing it again to int8 would
    give other numbers than the file's (``bench --backends ort-int8``, ``serve --backend
    ort-int8``)."""
    onnx = require("onnx", "onnx")
    proto = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in proto.graph.node}
    if ops & _ACTIVATION_QUANT_OPS:
        return "quantized activations"
    if ops & _WEIGHT_QUANT_OPS:
        return "low-bit or int8 weights, float activations"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer):
        return "fp16"
    return "fp32"


def fixed_batch(path) -> int | None:
    """The batch size an ONNX file's first input is fixed to (an export without
    ``--dynamic-batch``), or None when the batch dimension is free."""
    onnx = require("onnx", "onnx")
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def onnx_macs(path, shape) -> int:
    """Multiply-accumulates per input image of an ONNX classifier: the sum of
    :func:`onnx_layers` (conv, linear and matmul; ``profiler.MAC_CONVENTION``)."""
    return sum(layer["macs"] for layer in onnx_layers(path, shape))


# Where each counted operator takes its weight and bias (ONNX operator schemas).
_PARAM_INPUTS = {"Conv": (1, 2), "ConvInteger": (1,), "QLinearConv": (3, 8), "Gemm": (1, 2), "MatMul": (1,),
                 "MatMulInteger": (1,), "QLinearMatMul": (3,)}


# Standard operators that multiply-accumulate but are not counted here
_UNCOUNTED_MAC_OPS = ("ConvTranspose", "Einsum", "DeformConv", "RNN", "GRU", "LSTM", "Attention")


class UncountedOperators(SqueezeNetError):
    """An ONNX graph with operators whose multiply-accumulates :func:`onnx_layers` cannot
    count: the standard ones it does not count (:data:`_UNCOUNTED_MAC_OPS`), and any outside
    the standard domain, such as the ``com.microsoft`` ``FusedConv`` of a graph ONNX Runtime
    optimized and saved (``Conv`` + ``Relu`` fused), whose shapes ONNX's inference cannot
    follow either. Counted without them, such a graph's MACs would be too low, down to 0."""

    def __init__(self, path, ops: list[str]):
        self.ops = ops
        super().__init__(f"'{path}' has {', '.join(ops[:4])}{', ...' if len(ops) > 4 else ''} nodes, whose "
                         "multiply-accumulates this tool does not count (Conv, Gemm and MatMul in their standard, "
                         "integer and QLinear forms only), so its MACs would be too low; count the graph it was made "
                         "from (an ONNX Runtime-optimized file: the model before optimization)")


def _uncounted_ops(graph) -> list[str]:
    found = [f"{n.domain} {n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type for n in graph.node
             if n.domain not in ("", "ai.onnx") or n.op_type in _UNCOUNTED_MAC_OPS]
    return list(dict.fromkeys(found))


def onnx_layers(path, shape) -> list[dict]:
    """Per-node counts of an ONNX classifier, one row per Conv/MatMul/Gemm in graph order:
    name, op, output shape, parameters and MACs.

    The input is fixed to one image of ``shape`` (C, H, W) and shapes are inferred through
    the graph (quantized weights through their DequantizeLinear, a TTA file's two views
    through its Concat). Each Conv costs output elements x input channels per group x
    kernel area, each MatMul/Gemm output elements x the shared dimension. The zero
    channels a Pad added to the first conv are left out of both its MACs and its
    parameters. A node's parameters are the elements of the weight and bias initializers
    it reads, directly or through DequantizeLinear or Identity, counted for every node that
    reads them (the exporter stores equal tensors once, e.g. biases still at their zero
    init, and hands them on through Identity nodes; they are each layer's parameters all
    the same). An exported graph has its BatchNorm folded into the convolutions, so the
    total can be below the PyTorch model's. A graph with operators it cannot count
    is refused in one line (:class:`UncountedOperators`)."""
    onnx = require("onnx", "onnx")
    proto = onnx.load(str(path), load_external_data=False)
    uncounted = _uncounted_ops(proto.graph)
    if uncounted:
        raise UncountedOperators(path, uncounted)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, *shape)):
        d.Clear()
        d.dim_value = v
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    init_size = {i.name: int(np.prod(i.dims)) for i in inferred.graph.initializer}
    shapes = {i.name: list(i.dims) for i in inferred.graph.initializer}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
    made_by = {o: n for n in inferred.graph.node for o in n.output}

    def source(name):  # the tensor behind QuantizeLinear/DequantizeLinear/Identity
        node = made_by.get(name)
        while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear", "Identity"):
            name, node = node.input[0], made_by.get(node.input[0])
        return name, node

    def padded_from(name):  # the tensor a Pad widened
        node = source(name)[1]
        return node.input[0] if node is not None and node.op_type == "Pad" else None

    rows = []
    for node in inferred.graph.node:
        real, padded = 1, 1  # a Conv's input channels before and after a Pad added zero channels
        if node.op_type in _WEIGHT_INPUT:
            w, out = shapes.get(node.input[_WEIGHT_INPUT[node.op_type]]), shapes.get(node.output[0])
            per_out = int(np.prod(w[1:])) if w else 0
            x, src = shapes.get(node.input[0]), shapes.get(padded_from(node.input[0]))
            if per_out and x and src and len(src) == len(x) and 0 < src[1] < x[1]:
                real, padded = src[1], x[1]
        elif node.op_type in _MATMULS:
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            transposed = node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
            per_out = (a[-2] if transposed else a[-1]) if a else 0
        else:
            continue
        if not out or not per_out or 0 in out:
            raise SqueezeNetError(f"'{path}': cannot infer the shapes of its {node.op_type} node '{node.name}' at "
                                  f"input {tuple(shape)} to count its MACs; the graph may not take this input size "
                                  "(check --input-size)")
        weight, *bias = [init_size.get(source(node.input[i])[0], 0) if i < len(node.input) and node.input[i] else 0
                         for i in _PARAM_INPUTS[node.op_type]]
        rows.append({"name": node.name or node.output[0], "op": node.op_type, "output_shape": out,
                     "params": weight * real // padded + sum(bias), "macs": int(np.prod(out)) * per_out * real // padded})
    return rows
