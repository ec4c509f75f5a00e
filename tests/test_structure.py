"""The codebase's shape: one-way imports (README "Architecture"), torch.hub entry points."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "squeezenet"

# Which modules a module may import from the package (the layers of README "Architecture").
# Lower layers never import higher ones; models/ sees only the registry, errors and spec.
FORBIDDEN = {
    "registry.py": {"*"},  # a leaf
    "errors.py": {"*"},
    "spec.py": {"errors"},
    "imageio.py": {"errors"},
    "models/": {"factory", "train", "deploy", "cli", "data", "evaluate", "compression", "artifacts", "checkpoint",
                "config", "report", "compare", "sweep", "zoo"},
    "deploy/runtime.py": {"train", "cli", "data", "checkpoint", "models", "factory", "torch"},  # torch-free
    "deploy/sqz_onnx.py": {"train", "cli", "data", "checkpoint", "models", "factory", "torch"},  # torch-free
    "archs.py": {"torch", "models", "factory", "train", "data", "deploy", "cli"},  # architecture as data
    "factory.py": {"train", "deploy", "cli", "data", "evaluate", "compression"},
    "config.py": {"train", "deploy", "cli", "models", "data"},
    "data.py": {"train", "deploy", "cli", "models", "evaluate", "compression"},
    "checkpoint.py": {"train", "deploy", "cli", "data", "evaluate", "compression"},
    "train.py": {"cli", "deploy", "compression", "evaluate"},
}


def _imports(path: Path) -> set[str]:
    """First package-level name of every squeezenet-internal import (and 'torch')."""
    names = set()
    pkg = path.relative_to(SRC).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(pkg[: len(pkg) - node.level + 1]) + (node.module.split(".") if node.module else [])
                if base:
                    names.add(base[0].removesuffix(".py"))
                else:
                    names.update(a.name for a in node.names)
            elif node.module and node.module.split(".")[0] in ("squeezenet", "torch"):
                parts = node.module.split(".")
                names.add(parts[1] if parts[0] == "squeezenet" and len(parts) > 1 else parts[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names if a.name.split(".")[0] == "torch")
    return names


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_import_direction(where):
    files = sorted((SRC / where).rglob("*.py")) if where.endswith("/") else [SRC / where]
    assert files
    for f in files:
        got = _imports(f) - {"__future__", f.stem}
        bad = got if "*" in FORBIDDEN[where] else got & FORBIDDEN[where]
        if where == "spec.py" or where == "imageio.py":
            bad = got - FORBIDDEN[where]
        assert not bad, f"{f.relative_to(SRC)} imports {sorted(bad)}"


def test_torch_hub_entry_points():
    import torch

    import importlib.util

    repo = str(Path(__file__).parents[1])
    spec = importlib.util.spec_from_file_location("hubconf", Path(repo) / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    names = [n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_")]  # what torch.hub.list shows
    assert {"squeezenet1_0", "squeezenet1_1", "squeezenet1_1_simple_bypass", "create"} <= set(names)
    m = torch.hub.load(repo, "squeezenet1_1", source="local", num_classes=10)
    assert m.num_classes == 10 and sum(p.numel() for p in m.parameters()) == 1_235_496 - 513_000 + 5_130
    m = torch.hub.load(repo, "create", source="local", name="squeezenet1_1_w0.5_bn")
    assert m.batch_norm and m.default_cfg["width"] == 0.5
