"""A sweep's settings: one field per setting, from which ``squeezenet sweep``'s flags are
generated (:func:`squeezenet.settings.add_arguments`). Torch-free, so building the
command line never imports PyTorch."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SqueezeNetError
from ..machine import usable_cores
from ..settings import integer, non_negative, non_negative_int, opt, positive, positive_int, validate_fields
from .engines import ENGINES, SCHEDULERS
from .space import SEARCHES, require


@dataclass
class SweepSettings:
    """What a sweep runs and where. The data are a :class:`DataRef`; the grid's axes
    (``sr``, ``pct3x3``) are arguments of :func:`sweep`."""

    base: str = opt("squeezenet1_0", "the registered model whose design space is swept")
    train_epochs: int = opt(0, "train every point this many epochs (0: sizes and MACs only)", non_negative_int)
    train_model_options: str = opt("small,bn", "modifiers for trained points")
    batch_size: int = opt(256, "training batch size of every point", positive_int)
    seed: int = opt(0, "seed of every point's training and of the search", integer)
    out: str = opt("runs/sweep", "the sweep folder (points/, runs/, sweep.md)")
    search: str = opt("grid", "grid: the paper's Fig. 3 axes; random or tpe: a search over base_e, incr_e, pct3x3, "
                      "freq and SR (needs --train-epochs)", choices=SEARCHES)
    trials: int = opt(8, "points a random or tpe search trains", positive_int)
    max_params: int | None = opt(None, "objective: top-1 among points with at most this many parameters "
                                 "(ImageNet-shaped, 1000 classes, as in the table)", positive_int)
    max_macs: int | None = opt(None, "objective: top-1 among points with at most this many MACs at 224 px",
                               positive_int)
    engine: str = opt("local", "local: one point after another here; ray: Ray Tune trials (the [sweep] extra)",
                      choices=ENGINES)
    address: str | None = opt(None, "join this Ray cluster (HOST:6379); default: start Ray here with this "
                              "machine's cores")
    cpus_per_trial: float | None = opt(None, "CPUs (and torch threads) per point (default: all cores for local, "
                                       "1 for ray); equal values give equal results on both engines", positive)
    gpus_per_trial: float = opt(0.0, "GPUs per point (ray)", non_negative)
    scheduler: str = opt("none", "asha: stop weak points early (ray)", choices=SCHEDULERS)
    max_concurrent: int | None = opt(None, "points in flight at once; a tpe search asks this many per round "
                                     "(default: 1 for local, cores / --cpus-per-trial for ray)", positive_int)

    def check(self) -> None:
        validate_fields(self)
        if self.search != "grid" and self.train_epochs == 0:
            raise SqueezeNetError(f"--search {self.search} maximises top-1, so it needs --train-epochs N (>= 1)")
        if self.engine == "local" and (self.address or self.gpus_per_trial or self.scheduler != "none"):
            raise SqueezeNetError("--address, --gpus-per-trial and --scheduler are for --engine ray")
        if self.scheduler == "asha" and self.train_epochs < 2:
            raise SqueezeNetError("--scheduler asha stops points between epochs; give --train-epochs >= 2")
        if self.search == "tpe":
            require("optuna", "--search tpe")

    def threads(self) -> int | None:
        cpus = self.cpus_per_trial or (1 if self.engine == "ray" else None)
        return max(1, int(cpus)) if cpus else None

    def round_size(self) -> int:
        if self.max_concurrent:
            return self.max_concurrent
        return 1 if self.engine == "local" else max(1, int(usable_cores() // (self.cpus_per_trial or 1)))


def point_settings(s: SweepSettings, data: DataRef) -> dict:
    """Every setting that shapes a point's row; a finished point is reused only when they
    all match (style rule 16: never reuse in silence). The engine is not one of them."""
    return {"base": s.base, "train_epochs": s.train_epochs, "format": 2,
            **({"data": data.data, "batch_size": s.batch_size, "train_model_options": s.train_model_options,
                "seed": s.seed} if s.train_epochs > 0 else {})}


