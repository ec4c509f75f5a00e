"""Serve an exported SqueezeNet without PyTorch: numpy + pillow + onnxruntime.

The .onnx files written by ``squeezenet export`` carry the preprocessing (classes,
input size, channels, mean/std) in their metadata under the key ``squeezenet``, so::

    from squeezenet.deploy import load
    clf = load("model.onnx")
    clf.predict(["shoe.png"])   # [[("Sneaker", 0.93), ...]]

Install footprint: ``pip install squeezenet[serve]`` brings onnxruntime, numpy and
pillow (about 60 MB) and no torch; import only ``squeezenet.deploy``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import SqueezeNetError

META_KEY = "squeezenet"


def session_options(threads: int | None = None, tuned: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if tuned:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def open_session(path: str | os.PathLike, threads: int | None = None, tuned: bool = True):
    """An ORT CPU session, or a one-line error for a missing or corrupt file."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise SqueezeNetError("onnxruntime is missing; `pip install 'squeezenet[serve]'`") from e
    path = str(path)
    if not os.path.isfile(path):
        raise SqueezeNetError(f"ONNX file not found: '{path}'")
    try:
        return ort.InferenceSession(path, session_options(threads, tuned), providers=["CPUExecutionProvider"])
    except Exception as e:
        msg = str(e).splitlines()[0][:200]
        raise SqueezeNetError(f"cannot load ONNX model '{path}': corrupt or not an ONNX file ({msg})") from e


class OnnxClassifier:
    """An exported classifier plus its preprocessing."""

    def __init__(self, path, threads: int | None = None):
        self.path = str(path)
        self.session = open_session(path, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = json.loads(meta[META_KEY]) if META_KEY in meta else None
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_shape = inp.name, inp.shape  # e.g. ['batch', 1, 28, 28]
        self.input_type = np.float16 if "float16" in inp.type else np.float32

    @property
    def classes(self) -> list[str]:
        if not self.spec:
            return [str(i) for i in range(self.session.get_outputs()[0].shape[-1])]
        return self.spec["classes"]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a preprocessed (B, C, H, W) float batch."""
        want = self.input_shape
        if x.ndim != 4 or any(isinstance(w, int) and w != g for w, g in zip(want[1:], x.shape[1:])):
            raise SqueezeNetError(f"input has shape {tuple(x.shape)} but the model expects "
                                  f"(B, {', '.join(map(str, want[1:]))}); resize to the exported input size")
        if isinstance(want[0], int) and want[0] != x.shape[0]:
            raise SqueezeNetError(f"model was exported for batch {want[0]}, got {x.shape[0]}; "
                                  "re-export with --dynamic-batch")
        return self.session.run(None, {self.input_name: x.astype(self.input_type, copy=False)})[0].astype(np.float32)

    def preprocess(self, paths: list[str]) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        if not self.spec:
            raise SqueezeNetError(f"'{self.path}' has no squeezenet metadata; preprocess yourself and call run()")
        size, ch = self.spec["input_size"], self.spec["channels"]
        mean = np.asarray(self.spec["mean"], np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.spec["std"], np.float32).reshape(1, -1, 1, 1)
        out = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    im = im.convert("L" if ch == 1 else "RGB").resize((size, size))
            except FileNotFoundError as e:
                raise SqueezeNetError(f"image not found: '{p}'") from e
            except (UnidentifiedImageError, OSError, ValueError) as e:
                raise SqueezeNetError(f"cannot read image '{p}': corrupt or not an image") from e
            a = np.asarray(im, np.float32) / 255.0
            out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        return ((np.stack(out) - mean) / std).astype(np.float32)

    def predict(self, paths: list[str], topk: int = 5) -> list[list[tuple[str, float]]]:
        logits = self.run(self.preprocess(paths))
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs = e / e.sum(1, keepdims=True)
        res = []
        for row in probs:
            idx = np.argsort(-row)[:topk]
            res.append([(self.classes[i], float(row[i])) for i in idx])
        return res
