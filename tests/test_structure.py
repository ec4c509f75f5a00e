"""The codebase's shape: one-way imports (README "Architecture"), torch.hub entry points."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "squeezenet"

# README "Architecture", lowest layer first: a module imports only from its own layer or
# lower ones (lazy imports inside functions included). The README's table is checked
# against this one, so the two cannot drift apart.
LAYERS = [
    ("leaves", ["errors.py", "log.py", "settings.py", "registry.py", "spec.py", "imageio.py", "progress.py",
                "render.py", "files.py", "archs.py", "machine.py", "tta.py"]),
    ("sources", ["sources.py"]),
    ("models", ["models/", "factory.py", "zoo.py", "peers.py", "profiler.py"]),
    ("formats", ["formats/"]),
    ("data & state", ["config.py", "budget.py", "resizing.py", "data.py", "batches.py", "ema.py", "metrics.py"]),
    ("jobs", ["train.py", "report.py", "evaluate.py", "imagenet.py", "names.py", "deploy/", "serve/", "compression/",
              "compare.py", "sweep/"]),
    ("interface", ["cli.py", "__main__.py", "__init__.py"]),
]

# Further rules inside the layers.
FORBIDDEN = {
    "registry.py": {"*"},  # a leaf
    "errors.py": {"*"},
    "log.py": {"*"},
    "spec.py": {"errors", "tta"},  # these three: the only imports allowed
    "imageio.py": {"errors"},
    "tta.py": {"errors", "torch"},  # torch lazily, for torch tensors only (TORCH_FREE below)
    "models/": {"factory", "train", "deploy", "cli", "data", "evaluate", "compression", "formats", "config", "report",
                "compare", "sweep", "zoo"},
    "formats/": {"compression", "deploy", "train", "cli", "data", "serve"},
    "formats/sniff.py": {"torch"},
    "formats/onnx.py": {"torch"},
    "sources.py": {"torch"},
    "deploy/onnx_tools.py": {"torch"},
    "deploy/onnx_eval.py": {"torch"},
    "deploy/sqz_onnx.py": {"torch"},
    "serve/protocol.py": {"torch"},
    "serve/batching.py": {"torch"},
    "sweep/space.py": {"torch"},
    "sweep/config.py": {"torch", "data"},
    "sweep/engines.py": {"torch"},
    "archs.py": {"torch", "models", "factory"},  # architecture as data
}


def _layer_of(rel: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if rel == m or (m.endswith("/") and rel.startswith(m)):
                return i
    raise AssertionError(f"{rel} is in no layer of README 'Architecture'")


def _module_file(name: str) -> str | None:
    """The layer-table entry for a first-level package name ('formats' -> 'formats/')."""
    if (SRC / name).is_dir():
        return name + "/"
    if (SRC / f"{name}.py").is_file():
        return f"{name}.py"
    return None


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
        if where in ("spec.py", "imageio.py", "tta.py"):
            bad = got - FORBIDDEN[where]
        assert not bad, f"{f.relative_to(SRC)} imports {sorted(bad)}"


def test_no_module_imports_from_a_higher_layer():
    """Every import, lazy ones included, points to the same layer or a lower one; so there
    is no package loop across layers either (compression <-> formats <-> deploy, say)."""
    upward = []
    for f in sorted(SRC.rglob("*.py")):
        rel = str(f.relative_to(SRC))
        mine = _layer_of(rel)
        for name in _imports(f) - {"__future__", "torch"}:
            target = _module_file(name)
            if target and target != rel and _layer_of(target) > mine:
                upward.append(f"{rel} ({LAYERS[mine][0]}) -> {target} ({LAYERS[_layer_of(target)][0]})")
    assert not upward, upward


def test_readme_architecture_table_is_the_layer_table():
    readme = (SRC.parents[1] / "README.md").read_text()
    table = readme[readme.index("## Architecture"):].split("\n\n")[2]
    rows = [r.split("|")[1:3] for r in table.splitlines()[2:]]
    got = [(layer.strip(), sorted(m.strip("` ").split(" ")[0] for m in mods.split(",")))
           for layer, mods in rows]
    assert got == [(name, sorted(m.rstrip("/") + ("/" if m.endswith("/") else "") for m in members))
                   for name, members in LAYERS]


TORCH_FREE = ["squeezenet.cli", "squeezenet.config", "squeezenet.serve", "squeezenet.serve.app",
              "squeezenet.formats.sniff", "squeezenet.sources", "squeezenet.imageio", "squeezenet.evaluate",
              "squeezenet.formats.onnx", "squeezenet.formats.open", "squeezenet.deploy.onnx_tools", "squeezenet.deploy.onnx_eval",
              "squeezenet.deploy.sqz_onnx", "squeezenet.formats.sqz", "squeezenet.tta"]


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
