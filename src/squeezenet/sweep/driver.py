"""``squeezenet sweep``: the paper's design-space exploration (section 5, Fig. 3), as a
grid or a search, on one process or on Ray.

Over the squeeze ratio SR (pct3x3 = 0.5) and the fraction of 3x3 filters pct3x3 (SR =
0.5), or over all five section-5 metaparameters (``search="random"|"tpe"``), tabulate
parameters, model size (MiB of fp32 weights, the paper's "MB") and MACs at 224 px for
1000 classes; with ``train_epochs`` also train every point on real data (small-input stem
+ BN by default) and plot accuracy against size with its Pareto front.

Each point's row is saved in ``points/`` the moment it ends (on the driver, whichever
engine ran it), so an interrupted sweep resumes where it stopped; a failed point is
recorded with its error and retried by the next run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..data import DataRef, check_source
from ..errors import SqueezeNetError
from ..factory import create_model
from ..files import RunLock, atomic_write_text, ensure_writable_dir
from ..profiler import profile
from .config import SweepSettings, point_settings
from .engines import make_engine
from .report import write_report
from .space import grid_points, make_search, point_file, point_name
from .trial import run_trial


def sweep(sr=None, pct3x3=None, data: DataRef | str | None = None, settings: SweepSettings | None = None,
          trial_fn: Callable = run_trial, **kw) -> dict:
    """Run a sweep; ``kw`` may give any :class:`SweepSettings` or :class:`DataRef` field
    directly (``train_epochs=1, data="fashion-mnist"``). ``trial_fn(config, report)``
    replaces :func:`run_trial` (it must be picklable for Ray)."""
    settings = settings or SweepSettings(**{k: kw.pop(k) for k in list(kw) if k in SweepSettings.__annotations__})
    if not isinstance(data, DataRef):  # None, or a dataset name/folder given as data="..."
        data = DataRef(**{**({"data": data} if data else {}),
                          **{k: kw.pop(k) for k in list(kw) if k in DataRef.__annotations__}})
    if kw:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(kw))}")
    if data.data is None:
        data = DataRef("fashion-mnist", data.data_dir, data.download)
    settings.check()
    pts = grid_points(sr, pct3x3) if settings.search == "grid" else None
    check_base(settings.base)
    if settings.train_epochs and not settings.address:  # on a cluster the data need be only on its nodes
        check_source(data.data, data.data_dir, data.download)  # else every point would fail the same way
    outd = Path(settings.out)
    engine = make_engine(settings.engine, **({} if settings.engine == "local" else dict(
        address=settings.address, cpus_per_trial=settings.cpus_per_trial or 1, gpus_per_trial=settings.gpus_per_trial,
        scheduler=settings.scheduler, max_concurrent=settings.max_concurrent, storage=str(outd / "ray"),
        max_epochs=settings.train_epochs)))
    ensure_writable_dir(outd)
    with RunLock(outd):
        return Sweep(outd, settings, data, engine, trial_fn).run(pts)


def check_base(base: str) -> None:
    """A bad --base is one line, before any work: an unknown name as every command says it,
    a model without the Fire design space (SR, pct3x3) by saying so."""
    create_model(base)
    try:
        create_model(point_name(base, {"sr": 0.5, "pct3x3": 0.5}))
    except SqueezeNetError as e:
        raise SqueezeNetError(f"--base {base} has no squeeze ratio or 3x3 fraction to sweep ({e}); the design space "
                              "(paper Fig. 3, Table 3) is SqueezeNet's: use a squeezenet1_0 or squeezenet1_1 name") \
            from None


class Sweep:
    """One sweep folder: its points, the engine that runs them, and the record."""

    def __init__(self, outd: Path, settings: SweepSettings, data: DataRef, engine, trial_fn: Callable):
        self.outd, self.s, self.data, self.engine, self.trial_fn = outd, settings, data, engine, trial_fn
        self.settings = point_settings(settings, data)
        self.rejected = 0  # search draws over the parameter / MAC budget
        self._base_rows: dict[str, dict] = {}  # name -> sizes and MACs, profiled once per point
        (outd / "points").mkdir(parents=True, exist_ok=True)

    def run(self, grid: list[dict] | None) -> dict:
        rows = self.run_points(grid) if grid is not None else self.search()
        return write_report(self.outd, rows, self.s, self.rejected)

    # -------------------------------------------------------------- the points
    def search(self) -> list[dict]:
        s = self.s
        searcher = make_search(s.search, s.seed, s.trials)
        rows, asks = [], 0
        size = s.trials if s.search == "random" else s.round_size()  # random learns nothing: one round
        while len(rows) < s.trials and asks < 50 * s.trials:
            batch = []
            while len(batch) < min(size, s.trials - len(rows)) and asks < 50 * s.trials:
                p, asks = searcher.ask(), asks + 1
                if self.over_budget(self.base_row(p)):
                    self.rejected += 1
                    searcher.tell(p, 0.0)  # infeasible: the worst objective, so the search moves away
                else:
                    batch.append(p)
            for p, row in zip(batch, self.run_points(batch)):
                searcher.tell(p, row.get("top1") if row["status"] in ("done", "stopped") else None)
                rows.append(row)
        return rows

    def base_row(self, p: dict) -> dict:
        name = point_name(self.s.base, p)
        if name not in self._base_rows:
            prof = profile(create_model(name), (3, 224, 224))
            self._base_rows[name] = {"model": name, "params": prof.params, "size_mib": prof.params * 4 / 2**20,
                                     "macs": prof.macs, "settings": self.settings}
        return {**p, **self._base_rows[name]}

    def over_budget(self, row: dict) -> bool:
        return bool((self.s.max_params and row["params"] > self.s.max_params)
                    or (self.s.max_macs and row["macs"] > self.s.max_macs))

    def run_points(self, pts: list[dict]) -> list[dict]:
        """Rows of ``pts`` in order: finished ones read back, the rest run on the engine."""
        rows: dict[int, dict] = {}
        jobs = []
        for i, p in enumerate(pts):
            done = self.outd / "points" / point_file(self.s.base, p)
            row = self.reuse(done)
            if row is not None:
                rows[i] = row
                continue
            row = self.base_row(p)
            if self.over_budget(row):
                rows[i] = {**row, "status": "over budget"}
            elif self.s.train_epochs == 0:
                rows[i] = self.record(done, {**row, "status": "done"})
            else:
                jobs.append({"index": i, "file": str(done), "row": row, "config": self.trial_config(row)})

        def on_done(job: dict, outcome: dict) -> None:
            rows[job["index"]] = self.record(Path(job["file"]), {**job["row"], **outcome})

        self.engine.run(jobs, self.trial_fn, on_done)
        missing = [pts[j["index"]] for j in jobs if j["index"] not in rows]
        for j in jobs:
            rows.setdefault(j["index"], {**j["row"], "status": "failed", "error": "the engine returned no result"})
        if missing:
            from ..log import warn

            warn(f"{len(missing)} point(s) came back without a result; they are retried by the next run")
        return [rows[i] for i in range(len(pts))]

    def trial_config(self, row: dict) -> dict:
        mods = "".join(f"_{m.strip()}" for m in self.s.train_model_options.split(",") if m.strip())
        out = (self.outd / "runs" / f"{row['axis']}_{row['model']}").resolve()
        return {"model": row["model"] + mods, "epochs": self.s.train_epochs, "data": _absolute(self.data.data),
                "data_dir": _absolute(self.data.data_dir), "download": self.data.download,
                "batch_size": self.s.batch_size, "seed": self.s.seed, "out": str(out), "threads": self.s.threads(),
                "device": "auto"}

    def record(self, path: Path, row: dict) -> dict:
        if row.get("status") != "failed":
            row.pop("error", None)
        atomic_write_text(path, json.dumps(row, indent=2))
        return row

    def reuse(self, done: Path) -> dict | None:
        """The finished row in ``done`` if it was made with these settings; refuses
        otherwise. A failed point is run again."""
        if not done.exists():
            return None
        try:
            row = json.loads(done.read_text())
        except (OSError, ValueError):
            return None  # a damaged point is recomputed
        had = row.get("settings") if isinstance(row, dict) else None
        if had != self.settings:
            had = had or {}
            diff = "; ".join(f"{k} {had.get(k)!r} -> {self.settings.get(k)!r}"
                             for k in sorted(set(had) | set(self.settings))
                             if had.get(k) != self.settings.get(k)) or "made by an older squeezenet"
            raise SqueezeNetError(f"'{self.outd}' holds sweep points made with other settings ({diff}); use another "
                                  "--out (nothing was overwritten)")
        row.setdefault("status", "done")  # rows written before statuses existed
        return None if row["status"] == "failed" else row


def _absolute(path: str | None) -> str | None:
    """A data path as a worker elsewhere needs it (names like fashion-mnist stay names)."""
    if path is None or not Path(path).exists():
        return path
    return str(Path(path).resolve())
