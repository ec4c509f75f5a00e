"""torch.hub entry points, as torchvision's and timm's users expect::

    model = torch.hub.load("<owner>/<repo>", "squeezenet1_1", num_classes=10)
    model = torch.hub.load("<owner>/<repo>", "create", name="squeezenet1_1_simple_bypass_w0.5_bn")
    weights: torch.hub.load(..., "squeezenet1_1", weights="squeezenet1_1-b8a52dc0.pth")  # torchvision's file or URL

Every registered base name is an entry point; modifiers (``_w0.5``, ``_bn``, ...) go
through ``create``. No weights are downloaded unless ``weights`` names them.
"""

import os
import sys

dependencies = ["torch", "torchvision"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from squeezenet.factory import list_models as _list_models  # noqa: E402
from squeezenet.formats.open import open_model as _open_model  # noqa: E402


def create(name: str, weights: str | None = None, **kwargs):
    """Any model reference `squeezenet` commands take (a name with its modifiers, tv:/timm:
    names, a model file or a run folder); ``weights``: ImageNet weights for a name
    (torchvision's SqueezeNet file or URL). ``kwargs`` go to the model's builder."""
    return _open_model(name, weights=weights, **kwargs).model


def _entry(name: str):
    def entry(weights: str | None = None, **kwargs):
        return create(name, weights=weights, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"{name} (see `squeezenet explain {name}`); kwargs go to the model (num_classes, in_chans, ...)."
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
