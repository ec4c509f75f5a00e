"""The model registry: a leaf module (it imports no model file), as timm's
``_registry.py`` is. Model modules decorate their builders with
:func:`register_model`; ``squeezenet.models`` imports every model module; building by
name (``create_model``, ``list_models``, name parsing, ``explain_name``) lives in
:mod:`squeezenet.factory`.
"""

from __future__ import annotations

from typing import Callable

_REGISTRY: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    """Decorator: register a builder under its function name. Duplicates raise."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model '{name}' is already registered")
    _REGISTRY[name] = fn
    return fn


def model_entrypoint(name: str) -> Callable:
    return _REGISTRY[name]


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def is_registered(name: str) -> bool:
    return name in _REGISTRY
