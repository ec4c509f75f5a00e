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
    "formats/": {"compression", "deploy", "train", "cli", "torch", "data", "models", "serve"},
    "serve/": {"train", "cli", "data", "checkpoint", "models", "factory", "torch", "compression"},
    "sources.py": {"torch", "data", "train", "deploy", "cli", "models"},
    "deploy/onnx_tools.py": {"train", "cli", "data", "checkpoint", "models", "factory", "torch"},
    "deploy/onnx_eval.py": {"train", "cli", "data", "checkpoint", "models", "factory", "torch"},
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


TORCH_FREE = ["squeezenet.cli", "squeezenet.config", "squeezenet.serve", "squeezenet.serve.app",
              "squeezenet.formats.sniff", "squeezenet.sources", "squeezenet.imageio", "squeezenet.evaluate",
              "squeezenet.deploy.runtime", "squeezenet.deploy.onnx_tools", "squeezenet.deploy.onnx_eval",
              "squeezenet.deploy.sqz_onnx", "squeezenet.compression.container"]


def test_the_torch_free_modules_import_without_torch():
    """What `pip install 'squeezenet-toolkit[serve]'` must run: each module imports in a
    process where torch and torchvision cannot be imported."""
    import subprocess
    import sys

    code = ("import importlib, sys\nsys.modules['torch'] = sys.modules['torchvision'] = None\n"
            f"for m in {TORCH_FREE!r}:\n    importlib.import_module(m)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(SRC.parent), "PATH": ""})
    assert r.returncode == 0, r.stderr


def test_no_module_imports_another_modules_private_names():
    bad = []
    for f in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("squeezenet")):
                bad += [f"{f.relative_to(SRC)}: {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


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
