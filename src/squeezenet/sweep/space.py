"""Which points a sweep visits: the paper's Fig. 3 grid, or a search over the section-5
metaparameters (base_e, incr_e, pct3x3, freq, SR). Torch-free.

A point is a dict ``{"axis", "sr", "pct3x3"}`` (grid) plus ``base_e``, ``incr_e`` and
``freq`` (search). :func:`point_name` turns it into a model name whose modifiers say
every setting, so a row is rebuilt by name alone.

Searches are seeded and replayable: ``random`` draws from :data:`SPACE` with
:class:`random.Random`; ``tpe`` asks Optuna's TPE sampler (the ``[sweep]`` extra) in
rounds and is told each round's results, so the same seed and the same results give the
same points on any engine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import SqueezeNetError

SR_GRID = [0.125, 0.25, 0.5, 0.75, 1.0]  # Fig. 3a
PCT_GRID = [0.01, 0.125, 0.25, 0.5, 0.75, 0.99]  # Fig. 3b, at SR 0.5


@dataclass(frozen=True)
class Axis:
    """One searched metaparameter: its values are ``low, low + step, ..., high``
    (``choices`` instead, when given)."""

    low: float
    high: float
    step: float
    integer: bool = False
    choices: tuple = ()

    def values(self) -> list:
        if self.choices:
            return list(self.choices)
        n = int(round((self.high - self.low) / self.step))
        vals = [self.low + i * self.step for i in range(n + 1)]
        return [int(v) for v in vals] if self.integer else [round(v, 6) for v in vals]


# The section-5 metaparameters and the ranges searched (the paper's own values inside each:
# base_e 128, incr_e 128, pct3x3 0.5, freq 2, SR 0.125).
SPACE = {
    "base_e": Axis(32, 256, 32, integer=True),
    "incr_e": Axis(0, 256, 32, integer=True),
    "pct3x3": Axis(0.05, 0.95, 0.05),
    "freq": Axis(1, 8, 1, integer=True, choices=(1, 2, 4, 8)),
    "sr": Axis(0.125, 1.0, 0.125),
}
SEARCHES = ("grid", "random", "tpe")


def _decimal(x: float) -> str:
    """A number as a model-name modifier accepts it: plain decimals, never 1e-05."""
    return f"{x:.10f}".rstrip("0").rstrip(".") or "0"


def grid_points(sr=None, pct3x3=None) -> list[dict]:
    """The paper's Fig. 3 axes: SR at pct3x3 0.5, then pct3x3 at SR 0.5."""
    pts = [{"axis": "SR", "sr": s, "pct3x3": 0.5} for s in (SR_GRID if sr is None else sr)]
    pts += [{"axis": "pct3x3", "sr": 0.5, "pct3x3": p} for p in (PCT_GRID if pct3x3 is None else pct3x3)]
    for p in pts:
        if not (0 < p["sr"] <= 1 and 0 <= p["pct3x3"] <= 1):
            raise SqueezeNetError(f"SR must be in (0, 1] and pct3x3 in [0, 1]; got {p['sr']}, {p['pct3x3']}")
    return pts


def point_name(base: str, p: dict) -> str:
    """The model name of a point: ``<base>[_be_ie_freq]_sr_pct``."""
    design = "".join(f"_{k}{p[key]}" for k, key in (("be", "base_e"), ("ie", "incr_e"), ("freq", "freq"))
                     if key in p)
    return f"{base}{design}_sr{_decimal(p['sr'])}_pct{_decimal(p['pct3x3'])}"


def point_file(base: str, p: dict) -> str:
    return f"{p['axis']}_{point_name(base, p)}.json"


class RandomSearch:
    """Uniform draws from :data:`SPACE`, seeded; a point drawn twice is drawn again."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.seen: set = set()

    def ask(self) -> dict:
        for _ in range(1000):
            p = {"axis": "search", **{k: self.rng.choice(a.values()) for k, a in SPACE.items()}}
            key = tuple(sorted(p.items()))
            if key not in self.seen:
                self.seen.add(key)
                return p
        raise SqueezeNetError("the search space is exhausted; ask for fewer --trials")

    def tell(self, point: dict, value: float | None) -> None:
        pass  # random search learns nothing


class TPESearch:
    """Optuna's TPE sampler through its ask/tell interface (no Optuna storage: the sweep's
    points/ folder is the record, and a resumed sweep replays it)."""

    def __init__(self, seed: int, startup: int):
        optuna = require("optuna", "--search tpe")
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.dists = {k: (CategoricalDistribution(list(a.choices)) if a.choices else
                          IntDistribution(int(a.low), int(a.high), step=int(a.step)) if a.integer else
                          FloatDistribution(a.low, a.high, step=a.step)) for k, a in SPACE.items()}
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.pending: dict = {}

    def ask(self) -> dict:
        trial = self.study.ask(self.dists)
        p = {"axis": "search", **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in trial.params.items()}}
        self.pending[point_name("", p)] = trial
        return p

    def tell(self, point: dict, value: float | None) -> None:
        trial = self.pending.pop(point_name("", point))
        if value is None:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)


def make_search(kind: str, seed: int, trials: int):
    if kind == "random":
        return RandomSearch(seed)
    if kind == "tpe":
        return TPESearch(seed, startup=max(2, min(10, trials // 3)))
    raise SqueezeNetError(f"--search must be one of {', '.join(SEARCHES)}, got '{kind}'")


def require(module: str, what: str):
    """Import an optional dependency of the ``[sweep]`` extra, or one line saying how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SqueezeNetError(f"{what} needs {module}, which is not installed; install the sweep extra: "
                              "pip install 'squeezenet[sweep]'") from None
