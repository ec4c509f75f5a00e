import os
from pathlib import Path

import pytest
import torch

from helpers import TINY, make_fmnist_like

os.environ.setdefault("SQUEEZENET_CACHE", str(Path(__file__).parent / ".cache-tests"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory):
    return make_fmnist_like(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, fmnist_dir):
    """A finished one-epoch run of the tiny model (read-only for tests: copy to change)."""
    from squeezenet.train import Trainer, TrainConfig

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    Trainer(TrainConfig(model=TINY, data_dir=str(fmnist_dir), download=False, out=str(out), epochs=1,
                        batch_size=64, lr=0.1, progress=False, precision="fp32")).run()
    return out
