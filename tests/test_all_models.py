"""Every registered model: shape, finiteness, gradients to every parameter, ONNX export."""

import pytest
import torch

from squeezenet import create_model, list_models

VARIANTS = list_models() + ["squeezenet1_1_small_bn_w0.5", "squeezenet1_0_sr0.25_pct0.25", "squeezenet1_0_pct0.99"]


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_backward(name):
    torch.manual_seed(0)
    m = create_model(name, num_classes=10, dropout=0.0)
    x = torch.randn(2, 3, 96, 96)
    y = m(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", list_models())
def test_onnx_export_matches_eager(name, tmp_path):
    """Export route (stated): torch.onnx.export with the TorchScript-based exporter, the
    project default (dynamo=True is available as exporter="dynamo"); run with ONNX Runtime."""
    ort = pytest.importorskip("onnxruntime")
    from squeezenet.deploy.export import export_model_to_onnx

    torch.manual_seed(0)
    m = create_model(name, num_classes=10).eval()
    path = tmp_path / f"{name}.onnx"
    export_model_to_onnx(m, path, (3, 64, 64))
    x = torch.randn(1, 3, 64, 64)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert abs(out - m(x).numpy()).max() <= 1e-4
