"""One way in for every model reference: :func:`open_model`.

A reference is any of

- a registered name with modifiers (``squeezenet1_1_w0.5_bn``), or another library's
  classifier (``tv:mobilenet_v3_small``, ``timm:ghostnet_100``; bare torchvision names
  too), optionally with ImageNet ``weights`` (a file or an http(s) URL);
- a model file, recognised by content rather than extension and integrity-checked: a
  ``.pt`` checkpoint, a ``.sqz`` container or an ``.onnx`` export;
- a run folder (its ``best.pt``, else ``last.pt``).

Every command (``summary``, ``export``, ``bench``, ``compare``, ``compress``, ``quantize``, ``eval``,
``predict``, ``serve``), ``train --weights``, ImageNet evaluation and ``hubconf`` go
through here, so they accept the same references and refuse the same things in the same
words. A file that is something else (an image, a text file, an ONNX file where a
PyTorch model is needed) gets one line saying what was found and what to pass instead.

PyTorch is imported only for what needs it: an ``.onnx`` reference with ``need="any"``
opens with onnxruntime alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SqueezeNetError
from ..spec import DataSpec
from .sniff import KIND_WORDS, sniff

FILE_KINDS = ("checkpoint", "sqz", "onnx")


@dataclass
class OpenedModel:
    """What :func:`open_model` returns, whatever the reference was."""

    ref: str  # as given
    kind: str  # "name", "tv", "timm" (built by name) or "checkpoint", "sqz", "onnx" (a file)
    name: str  # model name (ours, tv:NAME, timm:NAME) or, for ONNX, the file's stem
    spec: DataSpec | None  # what training recorded (classes, size, mean/std); None for a bare name
    in_chans: int
    input_size: int  # the trained size, else the model's native resolution
    model: object | None = None  # torch.nn.Module (names, .pt, .sqz)
    onnx: object | None = None  # formats.onnx.OnnxClassifier
    path: str | None = None  # the file that was read
    notes: list[str] = field(default_factory=list)

    def logits(self, x):
        """Logits (float32 torch tensor) for a normalised (B, C, H, W) torch batch."""
        import torch

        with torch.no_grad():
            if self.onnx is not None:
                return torch.from_numpy(self.onnx.run(x.numpy()))
            return self.model(x).float()

    def need_spec(self):
        if self.spec is None:
            raise SqueezeNetError(f"'{self.ref}' has no data description (classes, input size, mean/std); it was "
                                  "not trained with `squeezenet train`; use a checkpoint from a run folder")
        return self.spec


_SAID: set[Path] = set()  # run folders whose file was named already in this process


def resolve_file(ref) -> tuple[Path, str] | None:
    """(file, kind) for a reference that names a file or a run folder; None for a model
    name. Torch-free: the server uses it before deciding how to load."""
    p = Path(ref)
    if p.is_dir():
        ck = next((p / n for n in ("best.pt", "last.pt") if (p / n).is_file()), None)
        if ck is None:
            raise SqueezeNetError(f"'{ref}' is a folder without best.pt or last.pt; pass a model file or a run folder")
        if ck not in _SAID:  # a command resolves its reference more than once; say it once
            from ..log import note

            _SAID.add(ck)
            note(f"run folder '{ref}': using {ck.name}" + (" (the epoch with the best validation top-1; last.pt "
                                                             "is the schedule's end)" if ck.name == "best.pt" else ""))
        p = ck
    if not p.is_file():
        if _looks_like_a_path(str(ref)):
            raise SqueezeNetError(f"model file not found: '{ref}'")
        return None
    try:
        kind = sniff(p)
    except OSError as e:
        raise SqueezeNetError(f"cannot read '{ref}': {e.strerror}") from e
    if kind not in FILE_KINDS:
        raise SqueezeNetError(f"'{ref}' is {KIND_WORDS[kind]}, not a model file; pass a .pt checkpoint, a .sqz "
                              "container, an .onnx export, a run folder or a model name")
    return p, kind


def weights_for_a_file(ref) -> SqueezeNetError:
    """The error for ImageNet ``--weights`` given with a model file, whose weights are its own."""
    return SqueezeNetError(f"--weights goes with a model name; '{ref}' is a model file with weights of its own")


def _looks_like_a_path(ref: str) -> bool:
    return os.sep in ref or ref.endswith((".pt", ".pth", ".onnx", ".sqz")) or ref.startswith(".")


def open_model(ref, *, weights: str | None = None, need: str = "torch", verify: bool = True,
               num_classes: int | None = None, in_chans: int | None = None, meta: bool = False,
               command: str = "this command", **model_options) -> OpenedModel:
    """Open any model reference (see the module docstring).

    Args:
        weights: ImageNet weights for a name (torchvision's SqueezeNet layout or the
            model's own); refused with a file, whose weights are its own.
        need: ``"torch"`` refuses an ONNX file (the command needs a PyTorch model);
            ``"any"`` accepts it.
        verify: check the file's integrity digest (``--skip-integrity-check`` turns it off).
        num_classes, in_chans, model_options: for a name, passed to its builder.
        meta: build a name on the meta device (shapes and counts, no memory).
    """
    if need not in ("torch", "any"):
        raise ValueError(f"need must be 'torch' or 'any', got {need!r}")
    found = resolve_file(ref)
    if found is None:
        return _open_name(str(ref), weights, num_classes, in_chans, meta, model_options)
    if weights:
        raise weights_for_a_file(ref)
    if num_classes or in_chans or model_options:
        raise SqueezeNetError(f"'{ref}' is a model file: its classes, input channels and options are its own; drop "
                              "--num-classes / --in-chans")
    path, kind = found
    if kind == "onnx" and need == "torch":
        raise SqueezeNetError(f"'{ref}' is an ONNX model; `squeezenet {command}` needs a PyTorch model: a .pt "
                              "checkpoint, a .sqz container, a run folder or a model name")
    return {"checkpoint": _open_checkpoint, "sqz": _open_sqz, "onnx": _open_onnx}[kind](str(ref), path, verify)


def _open_name(name, weights, num_classes, in_chans, meta, options) -> OpenedModel:
    from ..zoo import build_any

    built = build_any(name, num_classes=num_classes, in_chans=in_chans, meta=meta, **options)
    notes = [f"weights: {weights} ({load_weights_into(built.model, name, weights)})"] if weights else []
    kind = "timm" if name.startswith("timm:") else "tv" if built.library == "tv" else "name"
    return OpenedModel(name, kind, name, None, built.in_chans, built.input_size, model=built.model.eval(),
                       notes=notes)


def _spec_of(d: dict | None, where: str, model) -> DataSpec | None:
    if not d:
        return None
    kw = getattr(model, "model_kwargs", {})
    spec = DataSpec.from_dict(d, where, kw.get("num_classes"), kw.get("in_chans"))
    if spec.tta:  # only an ONNX export builds it into the graph; here it would be a false record
        raise SqueezeNetError(f"{where}: field 'tta' is set, but only an ONNX export has test-time augmentation "
                              "built in; the file is damaged or was edited by hand")
    return spec


def _opened_torch(ref, path, kind, name, model, data) -> OpenedModel:
    spec = _spec_of(data, f"'{path}' field 'data'", model)
    chans = getattr(model, "model_kwargs", {}).get("in_chans", 3)
    size = spec.input_size if spec else (getattr(model, "default_cfg", {}).get("input_size") or (3, 224, 224))[-1]
    return OpenedModel(ref, kind, name, spec, chans, size, model=model.eval(), path=str(path))


def _open_checkpoint(ref, path, verify) -> OpenedModel:
    from .checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(path, verify)
    model = model_from_checkpoint(ckpt, where=f"'{path}'")
    return _opened_torch(ref, path, "checkpoint", ckpt["model_name"], model, ckpt.get("data"))


def _open_sqz(ref, path, verify) -> OpenedModel:
    from .sqz import load_container

    model, header = load_container(path)
    return _opened_torch(ref, path, "sqz", header["model_name"], model, header.get("data"))


def _open_onnx(ref, path, verify) -> OpenedModel:
    from .onnx import OnnxClassifier

    clf = OnnxClassifier(path, verify=verify)
    return OpenedModel(ref, "onnx", path.stem, clf.spec, clf.spec.channels, clf.spec.input_size, onnx=clf,
                       path=str(path), notes=list(clf.notes))


# ------------------------------------------------------------------ ImageNet weights

def _torchvision_squeezenet(model, sd: dict) -> bool:
    return getattr(model, "default_cfg", {}).get("family") == "squeezenet" and "features.0.weight" in sd


def classifier_outputs(model, sd: dict) -> int | None:
    """How many outputs the classifier in state dict ``sd`` has, read where ``model``
    keeps its classifier (torchvision's SqueezeNet layout: ``classifier.1``); None when
    the state dict has no such entry."""
    if _torchvision_squeezenet(model, sd):
        w = sd.get("classifier.1.weight")
    else:
        head = model.get_classifier()
        key = next((f"{n}.weight" for n, m in model.named_modules() if m is head), None)
        w = sd.get(key) if key else None
    return int(w.shape[0]) if w is not None and w.dim() >= 1 else None


def read_state_dict(weights: str, own_checkpoint: bool = False) -> dict:
    """A state dict from a file or an http(s) URL (torch.hub's cache), loaded with
    ``weights_only=True``; the common wrappers (``state_dict``, ``model``, EMA) are unwrapped."""
    import torch

    if weights.startswith(("http://", "https://")):
        try:
            sd = torch.hub.load_state_dict_from_url(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # network errors come in many types
            raise SqueezeNetError(f"could not download '{weights}': {str(e).splitlines()[0][:100]}; download it "
                                  "elsewhere and pass the file") from e
    else:
        if not os.path.isfile(weights):
            raise SqueezeNetError(f"weights file not found: '{weights}'")
        kind = sniff(weights)
        if kind in ("sqz", "onnx"):
            raise SqueezeNetError(f"'{weights}' is {KIND_WORDS[kind]}, not a state dict of named tensors; a model file "
                                  "is passed as the model itself")
        try:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for damaged files
            raise SqueezeNetError(f"cannot read weights '{weights}': corrupt or not a torch file "
                                  f"({type(e).__name__})") from e
    if not own_checkpoint:
        _refuse_own_checkpoint(sd, weights)
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise SqueezeNetError(f"'{weights}' is not a state dict of named tensors")
    return sd


def _refuse_own_checkpoint(sd, weights: str) -> None:
    """A checkpoint of ours records the classes (and their order), input size and
    normalisation its weights were trained with; loaded as bare ``--weights`` into a
    name, those would be replaced by the name's defaults (ImageNet's), and a score
    taken that way is not the model's."""
    from .checkpoint import FORMAT

    if isinstance(sd, dict) and sd.get("format") == FORMAT:
        data = sd.get("data") if isinstance(sd.get("data"), dict) else {}
        classes = data.get("classes")
        what = f", {len(classes)} classes" if isinstance(classes, list) else ""
        raise SqueezeNetError(f"'{weights}' is a squeezenet checkpoint ('{sd.get('model_name')}'{what}) with its own "
                              "classes, input size and normalisation, which --weights would drop; pass the file "
                              "itself as the model (`eval --checkpoint FILE`, `compress --model FILE`)")


def load_weights_into(model, name: str, weights: str, own_checkpoint: bool = False, sd: dict | None = None) -> str:
    """Load an ImageNet state dict (file or URL) into ``model``: torchvision's SqueezeNet
    layout into ours, anything else key for key; shapes and finiteness checked. Returns
    the layout that was read. ``own_checkpoint``: accept a checkpoint of ours as a
    state dict (``train --weights``, which starts a new run on new data); elsewhere it
    is refused, since its recorded preprocessing would be dropped."""
    from .checkpoint import check_finite, load_state_dict_checked

    sd = read_state_dict(weights, own_checkpoint) if sd is None else sd
    if _torchvision_squeezenet(model, sd):
        from ..models.squeezenet import load_torchvision_state_dict

        load_torchvision_state_dict(model, sd)  # torchvision's SqueezeNet files
        layout = "torchvision's SqueezeNet layout"
    else:
        load_state_dict_checked(model, sd, name, f"'{weights}'")
        layout = "the model's own layout"
    check_finite(model.state_dict(), f"'{weights}'")
    return layout
