"""Checkpoints: written atomically, verified by a digest, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads under torch's safe unpickler. It records the model name and constructor
options, so :func:`model_from_checkpoint` rebuilds the exact architecture, and the
data spec (classes, channels, input size, mean/std) needed to predict.

Integrity: ``integrity.sha256`` is a SHA-256 over every other entry (tensors by dtype,
shape and bytes; everything else by value, dict keys sorted). Loading recomputes it, so
a flipped bit anywhere in the weights or settings is refused rather than predicted
with; ``verify=False`` (``--skip-integrity-check``) loads a file without one. Every
field is then checked before use, and non-finite weights are refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import SqueezeNetError
from .sniff import KIND_WORDS, sniff

FORMAT = "squeezenet-checkpoint"
FORMAT_VERSION = 2  # 2: integrity digest


# ------------------------------------------------------------------ integrity

def tree_digest(obj) -> str:
    """SHA-256 of a checkpoint-like tree, independent of pickling details."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, o) -> None:
    if isinstance(o, torch.Tensor):
        t = o.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(o, dict):
        h.update(b"d%d" % len(o))
        for k in sorted(o, key=repr):
            _feed(h, k)
            _feed(h, o[k])
    elif isinstance(o, (list, tuple)):
        h.update((b"l%d" if isinstance(o, list) else b"t%d") % len(o))
        for v in o:
            _feed(h, v)
    elif isinstance(o, bool) or o is None:
        h.update(repr(o).encode())
    elif isinstance(o, int):
        h.update(b"i" + str(o).encode())
    elif isinstance(o, float):
        h.update(b"f" + o.hex().encode())
    elif isinstance(o, str):
        b = o.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(b) + b)
    else:
        h.update(b"r" + repr(o).encode())


def seal(ckpt: dict) -> dict:
    """Add the integrity digest to a checkpoint dict (returns it)."""
    ckpt.pop("integrity", None)
    ckpt["integrity"] = {"sha256": tree_digest(ckpt)}
    return ckpt


# ------------------------------------------------------------------ loading

def load_checkpoint(path, verify: bool = True) -> dict:
    """Load a checkpoint safely and check it, or raise a one-line SqueezeNetError."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise SqueezeNetError(f"checkpoint not found: '{path}'")
    kind = sniff(path)
    if kind != "checkpoint":
        use = {"sqz": "; .sqz containers are read by predict, eval, export and quantize",
               "onnx": "; ONNX files are read by predict and eval"}.get(kind, "")
        raise SqueezeNetError(f"'{path}' is {KIND_WORDS[kind]}, not a PyTorch checkpoint{use}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        raise SqueezeNetError(f"cannot load checkpoint '{path}': corrupt, truncated or unsafe "
                              f"({type(e).__name__}); use another copy") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SqueezeNetError(f"'{path}' is not a squeezenet checkpoint; for torchvision weights use "
                              "`squeezenet.formats.open.open_model(name, weights=FILE)` or --weights")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SqueezeNetError(f"'{path}': field 'format_version' is invalid ({version!r})")
    if version > FORMAT_VERSION:
        raise SqueezeNetError(f"'{path}' is checkpoint format {version}; this squeezenet reads up to "
                              f"{FORMAT_VERSION}; upgrade squeezenet")
    if verify:
        digest = (ckpt.get("integrity") or {}).get("sha256") if isinstance(ckpt.get("integrity"), dict) else None
        if digest is None:
            raise SqueezeNetError(f"'{path}' carries no integrity digest (written by an older squeezenet or "
                                  "edited); pass --skip-integrity-check to load it anyway")
        body = {k: v for k, v in ckpt.items() if k != "integrity"}
        if tree_digest(body) != digest:
            raise SqueezeNetError(f"'{path}' is corrupted (integrity digest mismatch); use another copy or the "
                                  "run's other checkpoint")
    _check_fields(ckpt, path)
    return ckpt


def _check_fields(ckpt: dict, path) -> None:
    def need(key, types, want):
        if not isinstance(ckpt.get(key), types):
            raise SqueezeNetError(f"'{path}': field '{key}' is missing or not {want}; the file is not a complete "
                                  "squeezenet checkpoint")
    need("model_name", str, "a model name")
    need("model_kwargs", dict, "a table of model options")
    need("state_dict", dict, "a table of tensors")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["state_dict"].items()):
        raise SqueezeNetError(f"'{path}': field 'state_dict' holds something other than named tensors")
    if not isinstance(ckpt.get("data", {}), dict):
        raise SqueezeNetError(f"'{path}': field 'data' is not a table")


def check_finite(state_dict: dict, where) -> None:
    """Refuse NaN/inf weights: a diverged run predicts nothing sensible."""
    for k, v in state_dict.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise SqueezeNetError(f"{where}: weights '{k}' contain NaN or inf (the run diverged); use an earlier "
                                  "checkpoint or retrain with a lower --lr")


def model_from_checkpoint(ckpt: dict, expect_classes: int | None = None, expect_channels: int | None = None,
                          where: str = "checkpoint"):
    """Rebuild the model a checkpoint was trained as and load its weights."""
    from ..factory import create_model

    kwargs = dict(ckpt["model_kwargs"])
    if expect_classes is not None and kwargs.get("num_classes") != expect_classes:
        raise SqueezeNetError(
            f"checkpoint is for {kwargs.get('num_classes')} classes but the data has {expect_classes}; "
            "use a checkpoint trained on this dataset")
    if expect_channels is not None and kwargs.get("in_chans") != expect_channels:
        raise SqueezeNetError(
            f"checkpoint expects {kwargs.get('in_chans')}-channel images but the data has {expect_channels}")
    check_finite(ckpt["state_dict"], where)
    model = create_model(ckpt["model_name"], **kwargs)
    load_state_dict_checked(model, ckpt["state_dict"], ckpt["model_name"], where)
    return model


def load_state_dict_checked(model, state_dict: dict, model_name: str, where) -> None:
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state_dict))
    extra = sorted(set(state_dict) - set(ours))
    if missing or extra:
        what = f"missing '{missing[0]}'" if missing else f"unexpected '{extra[0]}'"
        raise SqueezeNetError(f"{where}: weights do not fit '{model_name}' ({what}, "
                              f"{len(missing) + len(extra)} key(s) differ)")
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(ours[k].shape):
            raise SqueezeNetError(f"{where}: weights '{k}' have shape {tuple(v.shape)}, '{model_name}' expects "
                                  f"{tuple(ours[k].shape)}")
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError) as e:
        raise SqueezeNetError(f"{where}: weights do not fit '{model_name}': {str(e).splitlines()[0]}") from e


def make_checkpoint(model, model_name: str, data_spec: dict | None = None, **extra) -> dict:
    """A sealed checkpoint dict for ``model`` (unwrapped from DDP/compile)."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    return seal({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "model_kwargs": dict(getattr(model, "model_kwargs", {})),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "data": data_spec or {},
        **extra,
    })


def check_resume(ckpt: dict, model_name: str, model_kwargs: dict, cfg: dict, must_match, path) -> None:
    """Refuse to resume a run as something else: another model, or changed settings
    that shape the optimisation (a silent splice of two runs). The message says what
    differs."""
    if ckpt["model_name"] != model_name:
        raise SqueezeNetError(f"cannot resume: {path} is a '{ckpt['model_name']}' run, not '{model_name}'; resume "
                              "without naming another model, or use another --out")
    if ckpt["model_kwargs"] != model_kwargs:
        saved_kw = ckpt["model_kwargs"]
        diff = [f"{k} {saved_kw.get(k)!r} -> {model_kwargs.get(k)!r}" for k in sorted(set(saved_kw) | set(model_kwargs))
                if saved_kw.get(k) != model_kwargs.get(k)]
        raise SqueezeNetError(f"cannot resume: {path} was built with other model options ({'; '.join(diff)}); drop "
                              "the flags that change them, or use another --out")
    saved = ckpt.get("config") or {}
    changed = [f"{k} {saved[k]!r} -> {cfg[k]!r}" for k in must_match if k in saved and saved[k] != cfg.get(k)]
    if changed:
        raise SqueezeNetError(f"cannot resume: {path} was trained with other settings ({'; '.join(changed)}); "
                              "drop those flags to resume with the run's own, or use another --out")


def check_resume_data(ckpt: dict, spec: dict, split: dict, path) -> None:
    """Refuse to resume on other data: other class names (a renamed folder), channels or
    input size, or another train/validation split (other files, another --val-fraction)."""
    saved = ckpt.get("data") or {}
    for key, word in (("classes", "class names"), ("channels", "channels"), ("input_size", "input size")):
        if key in saved and saved[key] != spec.get(key):
            raise SqueezeNetError(f"cannot resume: the data's {word} differ from the run's ({_brief(saved[key])} -> "
                                  f"{_brief(spec.get(key))}); resume on the data the run started with, or use another "
                                  "--out")
    was = ckpt.get("data_split")
    if was and split and was != split:
        raise SqueezeNetError(f"cannot resume: the data's split differs from the run's (train {was.get('train')} / "
                              f"validation {was.get('val')} images -> {split.get('train')} / {split.get('val')}"
                              f"{', other files' if (was.get('train'), was.get('val')) == (split.get('train'), split.get('val')) else ''}"
                              "); resume on the same files with the same --val-fraction, or use another --out")


def _brief(v) -> str:
    if isinstance(v, list) and len(v) > 5:
        return repr(v[:5])[:-1] + f", ... ({len(v)} in all)]"
    return repr(v)
