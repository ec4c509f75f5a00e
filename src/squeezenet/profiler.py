"""Per-layer parameters, multiply-accumulates (MACs) and output shapes of any model.

The convention, stated wherever a count is printed: MACs are multiply-accumulates of
convolutions, linear layers and matrix products, attention included, counted by
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per MAC; we halve it), and
FLOPs = 2 x MACs. That is torchvision's ``_ops`` metadata and what the papers report
(many say "FLOPs" and mean multiply-adds). BatchNorm, activations, pooling and
element-wise additions are left out unless asked for (``extra=("bn", "act", "pool",
"add")``); each such element operation then counts as one MAC, as fvcore and ptflops
count them. Attention is counted on every path: PyTorch's fused MultiheadAttention
fast path is switched off while profiling (it hides the attention products from the
counter) and the CPU flash-attention kernel gets the standard SDPA formula.

Model size is parameters times bytes per element (4 fp32, 2 fp16, 1 int8), ignoring
quantization scales and buffers. Models built on the meta device (no weights) are
profiled without allocating anything.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import SqueezeNetError

EXTRAS = {"bn": "BatchNorm", "act": "activations", "pool": "pooling", "add": "element-wise adds"}
MIB = 1024 * 1024


def convention(extra=()) -> str:
    """The counting convention, in words, for a set of extras."""
    kept = [EXTRAS[e] for e in EXTRAS if e in extra]
    left = [EXTRAS[e] for e in EXTRAS if e not in extra]
    s = "MACs = multiply-accumulates of conv/linear/matmul, attention included" + (
        f", plus {', '.join(kept)} (1 MAC per element op)" if kept else "")
    return s + "; FLOPs = 2 x MACs" + (f"; {', '.join(left)} not counted" if left else "")


MAC_CONVENTION = convention()


@dataclass
class LayerStats:
    name: str
    kind: str
    output_shape: list[int]
    params: int
    macs: int
    params_pct: float = 0.0
    macs_pct: float = 0.0


@dataclass
class Profile:
    model_name: str
    input_size: list[int]
    layers: list[LayerStats] = field(default_factory=list)
    params: int = 0
    macs: int = 0
    extra: tuple = ()
    note: str = ""  # how the counts were taken, where not from a PyTorch model

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def convention(self) -> str:
        return convention(self.extra)

    @property
    def size_bytes(self) -> dict[str, int]:
        return {"fp32": 4 * self.params, "fp16": 2 * self.params, "int8": self.params}

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "input_size": self.input_size,
            "convention": self.convention,
            "counted": ["conv", "linear", "matmul", "attention", *self.extra],
            **({"note": self.note} if self.note else {}),
            "layers": [asdict(layer) for layer in self.layers],
            "total": {"params": self.params, "macs": self.macs, "flops": self.flops, "size_bytes": self.size_bytes,
                      "size_mib": {k: v / MIB for k, v in self.size_bytes.items()}},
        }

    def format(self, fmt: str = "table") -> str:
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2)
        header = ["layer", "type", "output", "params", "params %", "MACs", "FLOPs", "MACs %"]
        rows = [[s.name, s.kind, "x".join(map(str, s.output_shape[1:])), f"{s.params:,}",
                 f"{s.params_pct:.1f}", f"{s.macs:,}", f"{2 * s.macs:,}", f"{s.macs_pct:.1f}"] for s in self.layers]
        total = ["total", "", "", f"{self.params:,}", "100.0", f"{self.macs:,}", f"{self.flops:,}", "100.0"]
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["name", "kind", "output_shape", "params", "params_pct", "macs", "flops", "macs_pct"])
            for s in self.layers:
                w.writerow([s.name, s.kind, "x".join(map(str, s.output_shape)), s.params,
                            f"{s.params_pct:.3f}", s.macs, 2 * s.macs, f"{s.macs_pct:.3f}"])
            w.writerow(["total", "", "", self.params, "100", self.macs, self.flops, "100"])
            return buf.getvalue()
        sizes = ", ".join(f"{k} {v / MIB:.2f} MiB" for k, v in self.size_bytes.items())
        footer = (f"{self.model_name} @ {'x'.join(map(str, self.input_size))}: {self.params:,} params, "
                  f"{self.macs / 1e9:.3f} GMACs = {self.flops / 1e9:.3f} GFLOPs; weights {sizes}\n{self.convention}"
                  + (f"\n{self.note}" if self.note else ""))
        if fmt == "markdown":
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows + [total]]
            return "\n".join(lines) + "\n\n" + footer
        if fmt != "table":
            raise SqueezeNetError(f"unknown format '{fmt}'; use table, markdown, csv or json")
        widths = [max(len(str(r[i])) for r in [header] + rows + [total]) for i in range(len(header))]
        fmt_row = lambda r: "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)  # noqa: E731
                                      for i, (c, w) in enumerate(zip(r, widths)))
        sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
        return "\n".join([fmt_row(header), sep] + [fmt_row(r) for r in rows] + [sep, fmt_row(total), footer])


# the row that holds what no listed layer computes or owns, so that the rows add up to the totals: a non-leaf
# module's own work (torch's MultiheadAttention projects with its own weights and multiplies queries by keys
# itself), a parameter held outside the listed layers
REST_ROW = "(rest of the model)"


def _default_layers(model: nn.Module):
    """Our models name their Table-1 layers; for any other model, use the leaf modules
    that hold parameters or pool. What none of them computes or owns goes to a last row
    (:data:`REST_ROW`), so every parameter and MAC lands in some row."""
    if hasattr(model, "profile_layers"):
        return model.profile_layers()
    rows = []
    for name, m in model.named_modules():
        if name and not list(m.children()):
            if any(True for _ in m.parameters(recurse=False)) or "Pool" in type(m).__name__:
                rows.append((name, m))
    return rows


def _kind(m: nn.Module) -> str:
    return type(m).__name__ if not isinstance(m, nn.Sequential) else type(m[0]).__name__


def _first(shape):
    """The first output's shape (ops like batch_norm return a tuple)."""
    return shape[0] if shape and isinstance(shape[0], (tuple, list, torch.Size)) else shape


def _per_element(*args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(_first(out_shape))  # FlopCounterMode counts FLOPs: 1 MAC = 2


def _tensor_add(a, b=None, *args, out_shape=None, **kwargs) -> int:
    return _per_element(out_shape=out_shape) if isinstance(b, torch.Size) else 0  # x + y, not x + 1


def _pool(x, *args, out_shape=None, **kwargs) -> int:
    """Each output element reads a window: the kernel (args[0]) or, adaptive, in/out area."""
    out = _first(out_shape)
    k = args[0] if args else 1
    if isinstance(k, (list, tuple)) and len(k) == 2 and tuple(k) == tuple(out[-2:]):  # adaptive: output size
        window = max(1, (x[-1] * x[-2]) // max(1, out[-1] * out[-2]))
    else:
        k = list(k) if isinstance(k, (list, tuple)) else [k]
        window = math.prod(k * 2 if len(k) == 1 else k)
    return 2 * math.prod(out) * window


def _mean(x, dims=None, *args, out_shape=None, **kwargs) -> int:
    """x.mean(dims): global average pooling as PyTorch dispatches AdaptiveAvgPool2d(1)."""
    return 2 * math.prod(x) if dims else 0


def _sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


EXTRA_OPS = {  # aten op names per extra, counted one MAC per element op
    "bn": ["_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
           "native_layer_norm", "native_group_norm"],
    "act": ["relu", "relu_", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
            "sigmoid", "sigmoid_", "silu", "silu_", "gelu", "gelu_", "tanh", "tanh_", "elu", "elu_", "mish",
            "mish_", "leaky_relu", "leaky_relu_", "clamp_min", "clamp_min_"],
    "pool": ["max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d",
             "adaptive_max_pool2d", "mean"],
    "add": ["add", "add_"],
}


def _mapping(extra) -> dict:
    aten = torch.ops.aten
    table = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu}
    for e in extra:
        formula = {"pool": _pool, "add": _tensor_add}.get(e, _per_element)
        for name in EXTRA_OPS[e]:
            if hasattr(aten, name):
                table[getattr(aten, name)] = _mean if name == "mean" else formula
    return table


@torch.no_grad()
def profile(model: nn.Module, input_size=(3, 224, 224), model_name: str | None = None, extra=()) -> Profile:
    """Profile ``model`` on one input of ``input_size`` (C, H, W) or (B, C, H, W).

    Returns a :class:`Profile` with per-layer output shape, parameters and MACs (and
    their share of the total) plus totals and fp32/fp16/int8 weight sizes. ``extra``
    adds BatchNorm ("bn"), activations ("act"), pooling ("pool") and element-wise adds
    ("add") to the count; see the module docstring for the convention.
    """
    if len(input_size) == 3:
        input_size = (1, *input_size)
    if len(input_size) != 4 or min(input_size) < 1:
        raise SqueezeNetError(f"input size must be (C, H, W), got {tuple(input_size)}")
    unknown = set(extra) - set(EXTRAS)
    if unknown:
        raise SqueezeNetError(f"unknown count option '{sorted(unknown)[0]}'; use {', '.join(EXTRAS)}")
    extra = tuple(e for e in EXTRAS if e in extra)
    model_name = model_name or getattr(model, "default_cfg", {}).get("name", type(model).__name__)
    was_training = model.training
    model.eval()
    layers = _default_layers(model)
    fqn = {id(m): n for n, m in model.named_modules()}
    shapes, hooks = {}, []
    for name, m in layers:
        hooks.append(m.register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, list(out.shape))))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(input_size, device=device)
    counter = FlopCounterMode(custom_mapping=_mapping(extra), display=False)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused path hides attention from the counter
    try:
        with counter:
            model(x)
    except (RuntimeError, AssertionError, ValueError) as e:  # torchvision's ViT asserts its image size
        msg = (str(e).splitlines() or [type(e).__name__])[0]
        raise SqueezeNetError(f"{model_name} does not accept input {tuple(input_size)}: {msg}; "
                              "check --input-size (some models, e.g. ViTs, take only their native size) and the "
                              "number of input channels") from e
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        for h in hooks:
            h.remove()
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    prof = Profile(model_name, list(input_size[1:]), extra=extra)
    for name, m in layers:
        flops = sum(counts.get(f"{root}.{fqn[id(m)]}", {}).values())
        prof.layers.append(LayerStats(name, _kind(m), shapes.get(name, []),
                                      sum(p.numel() for p in m.parameters()), flops // 2))
    prof.params = sum(p.numel() for p in model.parameters())
    prof.macs = counter.get_total_flops() // 2
    rest_params = prof.params - sum(s.params for s in prof.layers)
    rest_macs = prof.macs - sum(s.macs for s in prof.layers)
    if rest_params or rest_macs:  # computed outside the leaf layers (attention products, a functional projection)
        prof.layers.append(LayerStats(REST_ROW, "not in a layer above", [], rest_params, rest_macs))
    return _with_shares(prof)


def _with_shares(prof: Profile) -> Profile:
    for s in prof.layers:
        s.params_pct = 100.0 * s.params / max(prof.params, 1)
        s.macs_pct = 100.0 * s.macs / max(prof.macs, 1)
    return prof


def profile_from_rows(rows, input_size, model_name: str, note: str = "") -> Profile:
    """The same table from per-layer rows counted elsewhere (``deploy.onnx_tools.onnx_layers``
    counts an ONNX graph): dicts with name, op, output_shape, params and macs."""
    prof = Profile(model_name, list(input_size), [LayerStats(r["name"], r["op"], r["output_shape"], r["params"],
                                                             r["macs"]) for r in rows], note=note)
    prof.params = sum(r["params"] for r in rows)
    prof.macs = sum(r["macs"] for r in rows)
    return _with_shares(prof)
