"""Per-layer parameters, multiply-accumulates (MACs) and output shapes of any model.

MACs are multiply-accumulates of convolutions and linear/matmul ops only, counted by
``torch.utils.flop_counter.FlopCounterMode`` (which reports 2 FLOPs per MAC; we halve
it). BatchNorm, ReLU, pooling and additions are not counted, as in torchvision's
"GFLOPS" metadata and the papers the peers cite. Model size is parameters times bytes
per element (4 fp32, 2 fp16, 1 int8), ignoring quantization scales and buffers.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import SqueezeNetError

MAC_CONVENTION = "MACs = multiply-accumulates of conv/linear layers (1 MAC = 2 FLOPs); BN, ReLU, pool, add excluded"
MIB = 1024 * 1024


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

    @property
    def size_bytes(self) -> dict[str, int]:
        return {"fp32": 4 * self.params, "fp16": 2 * self.params, "int8": self.params}

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "input_size": self.input_size,
            "convention": MAC_CONVENTION,
            "layers": [asdict(layer) for layer in self.layers],
            "total": {"params": self.params, "macs": self.macs, "size_bytes": self.size_bytes,
                      "size_mib": {k: v / MIB for k, v in self.size_bytes.items()}},
        }

    def format(self, fmt: str = "table") -> str:
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2)
        header = ["layer", "type", "output", "params", "params %", "MACs", "MACs %"]
        rows = [[s.name, s.kind, "x".join(map(str, s.output_shape[1:])), f"{s.params:,}",
                 f"{s.params_pct:.1f}", f"{s.macs:,}", f"{s.macs_pct:.1f}"] for s in self.layers]
        total = ["total", "", "", f"{self.params:,}", "100.0", f"{self.macs:,}", "100.0"]
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["name", "kind", "output_shape", "params", "params_pct", "macs", "macs_pct"])
            for s in self.layers:
                w.writerow([s.name, s.kind, "x".join(map(str, s.output_shape)), s.params,
                            f"{s.params_pct:.3f}", s.macs, f"{s.macs_pct:.3f}"])
            w.writerow(["total", "", "", self.params, "100", self.macs, "100"])
            return buf.getvalue()
        sizes = ", ".join(f"{k} {v / MIB:.2f} MiB" for k, v in self.size_bytes.items())
        footer = (f"{self.model_name} @ {'x'.join(map(str, self.input_size))}: {self.params:,} params, "
                  f"{self.macs / 1e9:.3f} GMACs; weights {sizes}\n{MAC_CONVENTION}")
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


def _default_layers(model: nn.Module):
    """Our models name their Table-1 layers; for any other model, use the leaf modules
    that hold parameters or pool, so every parameter and MAC lands in some row."""
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


@torch.no_grad()
def profile(model: nn.Module, input_size=(3, 224, 224), model_name: str | None = None) -> Profile:
    """Profile ``model`` on one input of ``input_size`` (C, H, W) or (B, C, H, W).

    Returns a :class:`Profile` with per-layer output shape, parameters and MACs (and
    their share of the total) plus totals and fp32/fp16/int8 weight sizes.
    """
    if len(input_size) == 3:
        input_size = (1, *input_size)
    if len(input_size) != 4 or min(input_size) < 1:
        raise SqueezeNetError(f"input size must be (C, H, W), got {tuple(input_size)}")
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
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    except RuntimeError as e:
        msg = str(e).splitlines()[0]
        raise SqueezeNetError(f"model does not accept input {tuple(input_size)}: {msg}; "
                              "check --input-size and the number of input channels") from e
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    prof = Profile(model_name, list(input_size[1:]))
    for name, m in layers:
        flops = sum(counts.get(f"{root}.{fqn[id(m)]}", {}).values())
        prof.layers.append(LayerStats(name, _kind(m), shapes.get(name, []),
                                      sum(p.numel() for p in m.parameters()), flops // 2))
    prof.params = sum(p.numel() for p in model.parameters())
    prof.macs = counter.get_total_flops() // 2
    for s in prof.layers:
        s.params_pct = 100.0 * s.params / max(prof.params, 1)
        s.macs_pct = 100.0 * s.macs / max(prof.macs, 1)
    return prof
