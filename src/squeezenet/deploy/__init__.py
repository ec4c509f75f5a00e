"""Deployment: ONNX export, quantization, benchmarks and a torch-free serving path.

``squeezenet.deploy.load(ref)`` needs only numpy, pillow and onnxruntime for an .onnx
file or a SqueezeNet .sqz container; a .pt checkpoint (or a run folder) is exported
with PyTorch first.
"""

from __future__ import annotations

from pathlib import Path


def load(path, threads: int | None = None, verify: bool = True):
    """Any model file of ours (.onnx, .sqz, .pt, or a run folder: its best.pt, else
    last.pt) as an :class:`~squeezenet.formats.onnx.OnnxClassifier` on ONNX Runtime."""
    from ..formats.onnx import OnnxClassifier

    onnx_path, verify = onnx_file_for(path, verify)
    return OnnxClassifier(onnx_path, threads=threads, verify=verify)


def onnx_file_for(ref, verify: bool = True):
    """(an .onnx file, whether to check its digest) for a model reference: an .onnx as it
    is; a SqueezeNet .sqz converted without PyTorch; a .pt checkpoint (or another .sqz)
    exported with PyTorch. Converted files go to a temporary folder removed at exit."""
    from ..errors import SqueezeNetError
    from ..formats.open import resolve_file

    found = resolve_file(ref)  # the same references every command takes: a file (by content) or a run folder
    if found is None:
        raise SqueezeNetError(f"'{ref}' is not a model file; pass a .onnx, .pt or .sqz file or a run folder")
    p, kind = found
    if kind == "onnx":
        return p, verify
    import tempfile

    out = Path(tempfile.mkdtemp(dir=_scratch())) / f"{p.stem}.onnx"  # one folder per file: no name is reused
    from .sqz_onnx import is_squeezenet_sqz, sqz_to_onnx  # numpy + onnx: no PyTorch

    if kind == "sqz" and is_squeezenet_sqz(p):
        sqz_to_onnx(p, out)  # reads the container through its SHA-256 trailer
    else:
        from .export import export_onnx  # needs PyTorch

        export_onnx(checkpoint=str(p), out=str(out), dynamic_batch=True, verify=verify)
    return out, True  # written here with its digest


_SCRATCH = []


def _scratch():
    import atexit
    import shutil
    import tempfile

    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="squeezenet-deploy-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]
