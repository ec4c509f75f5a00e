"""squeezenet: SqueezeNet (Iandola et al., arXiv:1602.07360) and its whole life:
models, profiling, training, compression, deployment and comparison.

Heavy imports are lazy, so ``squeezenet.formats.onnx`` can serve an exported
.onnx file on a machine without PyTorch.
"""

__version__ = "0.1.0"

from .errors import SqueezeNetError  # noqa: F401

_LAZY = {
    "create_model": "factory", "list_models": "factory", "parse_model_name": "factory",
    "explain_name": "factory", "profile": "profiler",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'squeezenet' has no attribute '{name}'")


__all__ = ["SqueezeNetError", "__version__", *_LAZY]
