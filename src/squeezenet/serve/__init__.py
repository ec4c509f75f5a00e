"""``squeezenet serve``: an HTTP inference service for an exported classifier.

- :mod:`.config`: :class:`ServeConfig`, every setting once (the CLI flags come from it);
- :mod:`.protocol`: the Open Inference Protocol v2 request parsing (JSON tensors, Triton's
  binary-data extension, BYTES images), pure functions that raise :class:`HTTPError`;
- :mod:`.batching`: the micro-batcher (one ONNX Runtime call per batch, in a worker
  thread) and the Prometheus metrics;
- :mod:`.connection`: the deadline for a request's headers (slow or stalled clients);
- :mod:`.app`: the routes, error handlers and the guard (API key, size limit, counts);
- ``page.html``: the page at ``/``, package data.

Torch-free: an .onnx file, and a .sqz of the SqueezeNet family, are served with numpy,
pillow, onnx and onnxruntime alone, ``--backend ort-int8`` included.
"""

from .app import create_app, load_classifier, serve, uvicorn_config, wait_until_ready  # noqa: F401
from .config import ServeConfig  # noqa: F401
from .protocol import HTTPError  # noqa: F401
