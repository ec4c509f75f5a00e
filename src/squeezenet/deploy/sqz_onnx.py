"""A .sqz container to an ONNX model with no PyTorch: serving a compressed SqueezeNet
needs only numpy, onnx and onnxruntime.

The container's tensors are decoded with numpy (:func:`formats.sqz.read_container`),
the layer list comes from :mod:`squeezenet.archs` (architecture as data), and the graph
is written with ``onnx.helper``: each conv with its BatchNorm folded in (the inference
form), ReLU, Caffe's ceil-mode max pools, Fire concats, bypass adds, conv10 (with the
release's padding where the model has it), global average pool. The result carries the
container's data spec and an integrity digest like every ONNX file the tool writes.
Supported: every SqueezeNet in the registry (versions, bypasses, design space, width,
BN, stem); other families need PyTorch (``squeezenet export``).
"""

from __future__ import annotations

import json
import re

import numpy as np

from ..errors import SqueezeNetError, require

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, which the models use
_BASE = re.compile(r"^squeezenet(1_0|1_1)(_caffe|_simple_bypass|_complex_bypass)?(?:_|$)")


def is_squeezenet_name(name: str) -> bool:
    """Whether a model name is of the SqueezeNet family (what this module can write)."""
    return bool(_BASE.match(name))


def is_squeezenet_sqz(path) -> bool:
    """Whether a .sqz container holds a model of the SqueezeNet family, which
    :func:`sqz_to_onnx` converts without PyTorch."""
    from ..formats.sqz import read_raw

    return is_squeezenet_name(read_raw(path)[0]["model_name"])


def has_integer_weights(path) -> bool:
    """Whether a .sqz container holds low-bit integer weights (``quantize --weight-bits``),
    which its ONNX form keeps as INT8/INT4/INT2 initializers."""
    from ..formats.sqz import read_raw

    return any(t["kind"] == "intq" for t in read_raw(path)[0]["tensors"])


def _architecture(name: str, kw: dict):
    from ..archs import DesignSpace, build_stages

    m = _BASE.match(name)
    if not m:
        raise SqueezeNetError(f"'{name}' is not a SqueezeNet; converting it to ONNX needs PyTorch "
                              "(`squeezenet export --checkpoint FILE.sqz`)")
    bypass = {"_simple_bypass": "simple", "_complex_bypass": "complex"}.get(m.group(2) or "", "none")
    design = DesignSpace(kw.get("base_e", 128), kw.get("incr_e", 128), kw.get("pct3x3", 0.5), kw.get("freq", 2),
                         kw.get("squeeze_ratio", 0.125))
    return build_stages(m.group(1), bypass, design, kw.get("width", 1.0), kw.get("stem", "imagenet"),
                        kw.get("in_chans", 3))


# ONNX integer types for low-bit weights, with the opset whose DequantizeLinear takes them
# (INT4 from 21, INT2 from 25). Activations are UINT8 Q/DQ, after a Clip when narrower.
WEIGHT_TYPES = {2: ("INT2", 25), 4: ("INT4", 21), 8: ("INT8", 17)}


class _Graph:
    def __init__(self, arrays: dict, intq: dict | None = None, act_quant: dict | None = None):
        self.onnx = require("onnx", "serve")
        self.arrays, self.nodes, self.inits, self.n = arrays, [], [], 0
        self.intq, self.act_quant = intq or {}, act_quant or {}
        self.opset = 17

    def typed(self, hint: str, kind: str, shape, values) -> str:
        """An integer initializer of ONNX type ``kind`` (packed for 4 and 2 bits)."""
        from ..formats.encoding import pack_signed

        n = self.name(hint)
        t = getattr(self.onnx.TensorProto, kind)
        bits = {"INT2": 2, "UINT2": 2, "INT4": 4, "UINT4": 4}.get(kind)
        if bits:
            raw = pack_signed(np.asarray(values).astype(np.int64), bits)
            self.inits.append(self.onnx.helper.make_tensor(n, t, list(shape), raw, raw=True))
        else:  # 8-bit: one byte each, as raw data (a value list would take 4 bytes each)
            data = np.asarray(values).astype(np.int8 if kind == "INT8" else np.uint8).tobytes()
            self.inits.append(self.onnx.helper.make_tensor(n, t, list(shape), data, raw=True))
        return n

    def quantized_input(self, x: str, prefix: str) -> str:
        """QuantizeLinear -> DequantizeLinear on a conv's input, as the container says."""
        if prefix not in self.act_quant:
            return x
        step, bits = self.act_quant[prefix]
        s = self.const(prefix + ".a_step", np.array(step, np.float32))  # no zero point: 0, uint8
        if bits < 8:  # Clip to the b-bit range, then UINT8 Q/DQ: the same numbers as UINT4/UINT2 Q/DQ, which
            # ONNX Runtime 1.32's QDQ propagation moves through MaxPool and then rejects (no uint4 MaxPool)
            hi = self.const(prefix + ".a_max", np.array(step * ((1 << bits) - 1), np.float32))
            x = self.op("Clip", [x, "", hi], prefix + ".clip")
        return self.op("DequantizeLinear", [self.op("QuantizeLinear", [x, s], prefix + ".q"), s], prefix + ".dq")

    def quantized_weight(self, prefix: str) -> str:
        """An INT8/INT4/INT2 initializer -> DequantizeLinear (per output channel)."""
        q, step, bits = self.intq[f"{prefix}.weight"]
        kind, opset = WEIGHT_TYPES[bits]
        self.opset = max(self.opset, opset)
        w = self.typed(prefix + ".wq", kind, q.shape, q.ravel())  # zero point omitted: 0 (symmetric)
        return self.op("DequantizeLinear", [w, self.const(prefix + ".w_step", step)], prefix + ".wdq", axis=0)

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{hint.rsplit('.', 1)[-1]}{self.n}"  # short (w_step12): a small low-bit file is otherwise much names

    def const(self, hint: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), n))
        return n

    def ints(self, hint: str, values: list) -> str:
        """An int64 initializer (a shape, axes, slice bounds)."""
        n = self.name(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.array(values, np.int64), n))
        return n

    def op(self, op: str, inputs: list, hint: str, **attrs) -> str:
        self.n += 1
        out = f"t{self.n}"  # intermediate tensors: short names (a small model's file is otherwise mostly names)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, prefix: str, bn_prefix: str | None, pad: int = 0, stride: int = 1) -> str:
        """Conv with its BatchNorm folded: w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta."""
        w = self.arrays[f"{prefix}.weight"].astype(np.float64)
        b = self.arrays.get(f"{prefix}.bias", np.zeros(w.shape[0])).astype(np.float64)
        if bn_prefix and f"{bn_prefix}.weight" in self.arrays:
            g, beta = self.arrays[f"{bn_prefix}.weight"], self.arrays[f"{bn_prefix}.bias"]
            mean, var = self.arrays[f"{bn_prefix}.running_mean"], self.arrays[f"{bn_prefix}.running_var"]
            scale = g / np.sqrt(var + BN_EPS)
            w, b = w * scale[:, None, None, None], (b - mean) * scale + beta
        k = w.shape[-1]
        if f"{prefix}.weight" in self.intq:
            if bn_prefix and f"{bn_prefix}.weight" in self.arrays:
                raise SqueezeNetError(f"'{prefix}' has quantized weights and a BatchNorm; low-bit containers hold "
                                      "BN-folded models")
            weight = self.quantized_weight(prefix)
        else:
            weight = self.const(prefix + ".w", w)
        return self.op("Conv", [self.quantized_input(x, prefix), weight, self.const(prefix + ".b", b)], prefix,
                       kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride])


def _views_batch(g: _Graph, x: str, tta: str, shift: int, fill: list[float]) -> str:
    """(B, C, H, W) -> (V*B, C, H, W): the views of :func:`squeezenet.tta.views`, in its
    order (each offset's view, then their mirrors), with the same arithmetic: a move along
    an axis is the kept slice and a strip of fill (a slice of x, times 0, plus the fill)
    concatenated, so the border is training's padding and H, W stay free."""
    from ..tta import offsets

    consts = {}

    def along(v: str, d: int, axis: int) -> str:
        if d == 0:
            return v
        if not consts:
            consts.update(zero=g.const("zero", np.zeros((), np.float32)),
                          fill=g.const("fill", np.asarray(fill, np.float32).reshape(-1, 1, 1)))
        ax = g.ints("axes", [axis])
        edge = g.op("Slice", [v, g.ints("start", [0]), g.ints("end", [abs(d)]), ax], "edge")
        strip = g.op("Add", [g.op("Mul", [edge, consts["zero"]], "blank"), consts["fill"]], "strip")
        kept = g.op("Slice", [v, *((g.ints("start", [d]), g.ints("end", [np.iinfo(np.int64).max])) if d > 0
                                  else (g.ints("start", [0]), g.ints("end", [d]))), ax], "kept")
        return g.op("Concat", [kept, strip] if d > 0 else [strip, kept], "moved", axis=axis)

    out = [along(along(x, dy, 2), dx, 3) for dy, dx in offsets(tta, shift)]
    bounds = [g.ints("start", [-1]), g.ints("end", [np.iinfo(np.int64).min]), g.ints("axis", [3]), g.ints("step", [-1])]
    out += [g.op("Slice", [v, *bounds], "mirror") for v in out]
    return g.op("Concat", out, "tta_batch", axis=0)


def _mean_of_views(g: _Graph, logits: str, views: int, classes: int) -> str:
    """(V*B, K) -> (B, K): the mean of each image's logits over its views."""
    parts = g.op("Reshape", [logits, g.ints("views", [views, -1, classes])], "views")
    if g.opset >= 18:  # ReduceMean takes its axes as an input from opset 18
        return g.op("ReduceMean", [parts, g.ints("axes", [0])], "tta_mean", keepdims=0)
    return g.op("ReduceMean", [parts], "tta_mean", axes=[0], keepdims=0)


def sqz_to_onnx(src, dst, tta: str | None = None) -> str:
    """Write ``dst`` (.onnx) from the container ``src`` without importing torch.

    ``tta`` (``flip``, ``flip-shift``) builds test-time augmentation into the graph, as
    ``export --tta`` does for a PyTorch model (:class:`deploy.export.TTAverage`): the
    views of the batch go through the network as one batch, and each image's logits are
    averaged over its views. The file's data spec records it."""
    from ..formats.sqz import decode_arrays, intq_arrays, read_raw
    from ..files import atomic_write_bytes
    from ..spec import DataSpec, check_tta
    from ..tta import VIEWS_PER_IMAGE, fill_value, shift_pixels
    from ..formats.onnx import DIGEST_KEY, DIGEST_PLACEHOLDER, META_KEY, stamp_digest

    check_tta(tta)
    header, payload = read_raw(src)
    data = header.get("data") or {}
    if tta and not data:
        raise SqueezeNetError(f"'{src}' has no data description (classes, input size) to record --tta {tta} in; "
                              "pass a .sqz written from a trained model")
    if tta:
        spec = DataSpec.from_dict(data, f"'{src}' header 'data'")
        shift, fill = shift_pixels(tta, spec.pad, f"'{src}'"), fill_value(spec.mean, spec.std)
    arrays = decode_arrays(header, payload, f"'{src}'")

    def get(ref):
        return payload[ref[0]:ref[0] + ref[1]]

    intq = {t["key"]: (*intq_arrays(t, get), t["bits"]) for t in header["tensors"] if t["kind"] == "intq"}
    kw = header["model_kwargs"]
    stages = _architecture(header["model_name"], kw)
    for k, v in arrays.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise SqueezeNetError(f"'{src}': weights '{k}' contain NaN or inf")
    g = _Graph(arrays, intq, header.get("act_quant"))
    onnx = g.onnx
    try:
        x = _views_batch(g, "input", tta, shift, fill) if tta else "input"
        for st in stages:
            f = f"features.{st.name}"
            if st.kind == "conv":
                x = g.op("Relu", [g.conv(x, f"{f}.conv", f"{f}.bn", st.padding, st.stride)], st.name)
            elif st.kind == "pool":
                x = g.op("MaxPool", [x], st.name, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
            else:
                s = g.op("Relu", [g.conv(x, f"{f}.squeeze", f"{f}.squeeze_bn")], st.name + "_s")
                outs = [g.op("Relu", [g.conv(s, f"{f}.{e}", f"{f}.{e}_bn", pad)], f"{st.name}_{e}")
                        for e, pad, n in (("expand1x1", 0, st.out[1]), ("expand3x3", 1, st.out[2])) if n]
                y = g.op("Concat", outs, st.name, axis=1) if len(outs) > 1 else outs[0]
                if st.shortcut == "identity":
                    y = g.op("Add", [y, x], st.name + "_add")
                elif st.shortcut == "conv":
                    y = g.op("Add", [y, g.conv(x, f"bypass.{st.name}", None)], st.name + "_add")
                x = y
        x = g.conv(x, "classifier.conv10", None, kw.get("head_padding", 0))
        if kw.get("head_relu", True):
            x = g.op("Relu", [x], "relu10")
        x = g.op("GlobalAveragePool", [x], "avgpool10")
        if tta:
            x = _mean_of_views(g, g.op("Flatten", [x], "flatten", axis=1), VIEWS_PER_IMAGE[tta],
                               kw.get("num_classes", 1000))
        g.nodes.append(onnx.helper.make_node("Flatten", [x], ["logits"], axis=1))
    except KeyError as e:
        raise SqueezeNetError(f"'{src}' lacks tensor {e} of a '{header['model_name']}'") from None
    chans = kw.get("in_chans", 3)
    graph = onnx.helper.make_graph(
        g.nodes, header["model_name"],
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", chans, None, None])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", kw.get("num_classes", 1000)])],
        g.inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", g.opset)],
                                   producer_name="squeezenet")
    model.ir_version = {17: 8, 21: 10, 25: 11}[g.opset]
    if tta:
        data = {**data, "tta": tta}
    if data:
        DataSpec.from_dict(data, f"'{src}' header 'data'", kw.get("num_classes"), chans)
        e = model.metadata_props.add()
        e.key, e.value = META_KEY, json.dumps(data)
        size = data["input_size"]
        model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = size
        model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = size
    onnx.checker.check_model(model)
    e = model.metadata_props.add()
    e.key, e.value = DIGEST_KEY, DIGEST_PLACEHOLDER.decode()
    atomic_write_bytes(dst, stamp_digest(model.SerializeToString()))
    return str(dst)
