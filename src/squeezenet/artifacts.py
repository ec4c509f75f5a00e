"""Every model file the tool reads (.pt checkpoint, .sqz container, .onnx export),
recognised by content rather than by extension, integrity-checked, and returned with
the data spec it was trained with.

``load_model_file(path)`` is what ``predict``, ``eval``, ``export``, ``quantize``,
``compress`` and ``bench`` call; a file that is something else (an image, a text file,
a folder, an ONNX file where a PyTorch model is needed) gets one line saying what was
found and what to pass instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import KIND_WORDS, load_checkpoint, model_from_checkpoint, sniff
from .errors import SqueezeNetError
from .spec import DataSpec


@dataclass
class ModelFile:
    path: str
    kind: str  # "checkpoint", "sqz" or "onnx"
    name: str  # model name (registry) or the file's stem for ONNX
    spec: DataSpec | None
    model: torch.nn.Module | None = None  # PyTorch model (checkpoint, sqz)
    onnx: object | None = None  # deploy.runtime.OnnxClassifier
    notes: list[str] = field(default_factory=list)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (float32) for a normalised (B, C, H, W) batch."""
        if self.onnx is not None:
            return torch.from_numpy(self.onnx.run(x.numpy()))
        return self.model(x).float()

    def need_spec(self) -> DataSpec:
        if self.spec is None:
            raise SqueezeNetError(f"'{self.path}' has no data description (classes, input size, mean/std); it was "
                                  "not trained with `squeezenet train`; use a checkpoint from a run folder")
        return self.spec


def _spec(d: dict | None, where: str, model) -> DataSpec | None:
    if not d:
        return None
    kw = getattr(model, "model_kwargs", {})
    return DataSpec.from_dict(d, where, kw.get("num_classes"), kw.get("in_chans"))


def load_model_file(path, verify: bool = True, need_torch: bool = False, command: str = "this command") -> ModelFile:
    """Load a model file by its content; ``need_torch`` refuses ONNX files."""
    p = Path(path)
    if p.is_dir():
        ck = next((p / n for n in ("best.pt", "last.pt") if (p / n).is_file()), None)
        if ck is None:
            raise SqueezeNetError(f"'{path}' is a folder without best.pt or last.pt; pass a model file")
        p = ck
    if not p.is_file():
        raise SqueezeNetError(f"model file not found: '{path}'")
    try:
        kind = sniff(p)
    except OSError as e:
        raise SqueezeNetError(f"cannot read '{path}': {e.strerror}") from e
    if kind == "checkpoint":
        ckpt = load_checkpoint(p, verify)
        model = model_from_checkpoint(ckpt, where=f"'{p}'").eval()
        return ModelFile(str(p), kind, ckpt["model_name"], _spec(ckpt.get("data"), f"'{p}' field 'data'", model),
                         model)
    if kind == "sqz":
        from .compression.container import load_container

        model, header = load_container(p)
        return ModelFile(str(p), kind, header["model_name"], _spec(header.get("data"), f"'{p}' header 'data'", model),
                         model)
    if kind == "onnx":
        if need_torch:
            raise SqueezeNetError(f"'{path}' is an ONNX model; `squeezenet {command}` needs a PyTorch checkpoint "
                                  "(.pt) or a .sqz container")
        from .deploy.runtime import OnnxClassifier

        clf = OnnxClassifier(p, verify=verify)
        return ModelFile(str(p), kind, p.stem, clf.spec, onnx=clf, notes=list(clf.notes))
    raise SqueezeNetError(f"'{path}' is {KIND_WORDS[kind]}, not a model file; pass a .pt checkpoint, a .sqz "
                          "container or an .onnx export")
