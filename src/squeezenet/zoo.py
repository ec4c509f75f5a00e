"""Build any model by name: ours (registry), torchvision's (``tv:NAME`` or a bare
torchvision builder name) and timm's (``timm:NAME``, optional extra)."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from .errors import SqueezeNetError
from .factory import create_model, is_model


class Built(NamedTuple):
    model: torch.nn.Module
    in_chans: int
    input_size: int  # native square resolution in px
    library: str  # "ours", "tv" or "timm"


def build_any(name: str, num_classes: int | None = None, in_chans: int | None = None, meta: bool = False,
              **options) -> Built:
    """The model called ``name`` with random weights (no hub), in eval mode, and its
    native resolution (torchvision: its default weights' crop size; timm: its
    pretrained config; ours: the name's ``_<N>`` or 224). torchvision models are built
    with their default weights' configuration (classes, image size), never downloaded.

    ``meta=True`` puts every weight on the meta device: shapes and counts without
    allocating anything (``summary``/``explain`` of any size answer at once).
    ``options`` go to our own builders (dropout, head_relu, ...); other libraries'
    models take none. Model files and run folders are opened by
    :func:`squeezenet.formats.open.open_model`, which calls this for names."""
    with meta_weights() if meta else contextlib.nullcontext():
        return _build(name, num_classes, in_chans, options)


@contextlib.contextmanager
def meta_weights():
    """Every parameter and buffer a module registers goes to the meta device; code that
    computes with ordinary tensors while building (RegNet's widths) still works."""
    from torch import nn

    reg_p, reg_b = nn.Module.register_parameter, nn.Module.register_buffer

    def param(self, name, p):
        reg_p(self, name, p)
        if p is not None:
            self._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)

    def buffer(self, name, t, persistent=True):
        reg_b(self, name, t.to("meta") if isinstance(t, torch.Tensor) else t, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = param, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = reg_p, reg_b


@contextlib.contextmanager
def _weights_config_only():
    """Build a torchvision model with ``weights=...`` (its classes, image size, ...)
    without fetching or loading the weights."""
    from torchvision.models._api import WeightsEnum

    get, load = WeightsEnum.get_state_dict, torch.nn.Module.load_state_dict
    WeightsEnum.get_state_dict = lambda self, *a, **k: {}
    torch.nn.Module.load_state_dict = lambda self, *a, **k: None
    try:
        yield
    finally:
        WeightsEnum.get_state_dict, torch.nn.Module.load_state_dict = get, load


TV_TASKS = {"detection": "an object detector", "segmentation": "a segmentation model", "video": "a video model",
            "optical_flow": "an optical-flow model", "quantization": "an int8 (quantized) classifier"}


def check_tv_classifier(name: str) -> None:
    """Refuse, in one line, a torchvision model that is not an image classifier (detection,
    segmentation, video, optical flow) or is one of its int8 builds: every count and
    evaluation here is for float classifiers."""
    import torchvision

    for task, word in TV_TASKS.items():
        module = getattr(torchvision.models, task, None)
        if module is not None and name in torchvision.models.list_models(module=module):
            hint = (f"; use its float model 'tv:{name.removeprefix('quantized_')}'" if task == "quantization"
                    else "; image classifiers only (see torchvision.models.list_models(module=torchvision.models))")
            raise SqueezeNetError(f"'tv:{name}' is torchvision's {word}, which squeezenet does not count or "
                                  f"evaluate{hint}")


def tv_default_weights(name: str):
    """torchvision's default weights entry for a classifier's builder name (metadata only),
    or None; a torchvision model that is not a float classifier is refused."""
    import torchvision

    check_tv_classifier(name)
    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _build(name, num_classes, in_chans, options) -> Built:
    kw = {}
    if num_classes:
        kw["num_classes"] = num_classes
    if options and (name.startswith(("tv:", "timm:")) or (not is_model(name) and _is_tv(name))):
        raise SqueezeNetError(f"model options ({', '.join(sorted(options))}) apply to our models only, not '{name}'")
    if name.startswith("timm:"):
        from .errors import require

        timm = require("timm", "peers")
        try:
            m = timm.create_model(name[5:], pretrained=False, in_chans=in_chans or 3, **kw)
        except RuntimeError as e:
            raise SqueezeNetError(f"unknown timm model '{name[5:]}' ({e})") from e
        size = m.pretrained_cfg.get("input_size", (3, 224, 224))[1] if hasattr(m, "pretrained_cfg") else 224
        return Built(m.eval(), in_chans or 3, size, "timm")
    if name.startswith("tv:") or (not is_model(name) and _is_tv(name)):
        import torchvision

        tv = name[3:] if name.startswith("tv:") else name
        check_tv_classifier(tv)
        if in_chans not in (None, 3):
            raise SqueezeNetError("torchvision models take 3-channel input; drop --in-chans")
        w = tv_default_weights(tv)
        try:
            if w is not None and not kw:  # the weights' own configuration (classes, image size)
                with _weights_config_only():
                    m = torchvision.models.get_model(tv, weights=w)
            else:
                m = torchvision.models.get_model(tv, weights=None, **kw)
        except ValueError as e:
            raise SqueezeNetError(f"unknown torchvision model '{tv}'") from e
        return Built(m.eval(), 3, w.transforms().crop_size[0] if w is not None else 224, "tv")
    kw_ours = {**kw, **options}
    if in_chans:
        kw_ours["in_chans"] = in_chans
    m = create_model(name, **kw_ours)
    return Built(m.eval(), m.default_cfg["input_size"][0], m.default_cfg["input_size"][1], "ours")


def _is_tv(name: str) -> bool:
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)
