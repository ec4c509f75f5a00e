"""Deployment: ONNX export, quantization, benchmarks and a torch-free serving path.

``squeezenet.deploy.load(path)`` needs only numpy, pillow and onnxruntime.
"""


def load(path, **kwargs):
    """Load an exported .onnx classifier for prediction (no PyTorch needed)."""
    from ..formats.onnx import OnnxClassifier

    return OnnxClassifier(path, **kwargs)
