"""Where a sweep's trials run: in this process (``local``) or as Ray Tune trials (``ray``).

An engine has one method, ``run(jobs, trial_fn, on_done)``: it runs
``trial_fn(job["config"], report)`` for every job and calls ``on_done(job, outcome)`` in
this process as each one ends, where ``outcome`` is ``{"status": "done", **metrics}``,
``{"status": "failed", "error": "..."}`` or, when ASHA stopped it,
``{"status": "stopped", "top1": <last epoch's>, "epochs_run": k}``. A failing trial is an
outcome, never an exception: the sweep goes on. The driver writes each outcome to disk at
once, so a killed sweep keeps every finished trial.

Ray is the ``[sweep]`` extra and is imported only here, only when asked for.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Callable

from ..errors import SqueezeNetError
from ..machine import usable_cores
from .space import require

ENGINES = ("local", "ray")
SCHEDULERS = ("none", "asha")


def _error_text(e: BaseException) -> str:
    """One line for the record: the exception and where it was raised."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}".replace("\n", " ")


class LocalEngine:
    """Trials one after another in this process."""

    name = "local"

    def __init__(self, scheduler: str = "none"):
        if scheduler != "none":
            raise SqueezeNetError(f"--scheduler {scheduler} needs --engine ray (the local engine runs each point "
                                  "to the end)")

    def run(self, jobs: list[dict], trial_fn: Callable, on_done: Callable) -> None:
        for job in jobs:
            try:
                outcome = {"status": "done", **trial_fn(job["config"], None)}
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # noqa: BLE001 - a failing trial is recorded, the sweep goes on
                outcome = {"status": "failed", "error": _error_text(e)}
            on_done(job, outcome)


class RayEngine:
    """Every job a Ray Tune trial (``Tuner`` + ``tune.with_resources``), optionally with
    ASHA early stopping. ``address`` joins a running cluster (``ray start --head``);
    without it Ray starts here with this machine's cores."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
                 scheduler: str = "none", max_concurrent: int | None = None, storage: str | None = None,
                 max_epochs: int = 1):
        if scheduler not in SCHEDULERS:
            raise SqueezeNetError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got '{scheduler}'")
        self.ray = require("ray", "--engine ray")
        require("ray.tune", "--engine ray")
        self.address, self.cpus, self.gpus = address, cpus_per_trial, gpus_per_trial
        self.scheduler, self.max_concurrent, self.max_epochs = scheduler, max_concurrent, max_epochs
        self.storage = str(Path(storage or "ray_results").resolve())

    def _init(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False, logging_level="WARNING")
            else:
                ray.init(num_cpus=usable_cores(), num_gpus=None, include_dashboard=False, log_to_driver=False,
                         logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise SqueezeNetError(f"could not start or join {where}: {str(e).splitlines()[0]} (check --address and "
                                  "`ray status`)") from None
        have = ray.cluster_resources()
        if have.get("CPU", 0) < self.cpus or have.get("GPU", 0) < self.gpus:
            raise SqueezeNetError(f"the Ray cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; "
                                  f"a trial asks for {self.cpus:g} and {self.gpus:g} (lower --cpus-per-trial / "
                                  "--gpus-per-trial)")

    def run(self, jobs: list[dict], trial_fn: Callable, on_done: Callable) -> None:
        if not jobs:
            return
        self._init()
        from ray import tune

        by_index = {j["index"]: j for j in jobs}
        epochs = self.max_epochs

        def trainable(config: dict) -> None:  # runs in a Ray worker
            def report(metrics: dict) -> None:
                if metrics["epoch"] < epochs:  # the last epoch is reported with the outcome below
                    tune.report({**metrics, "status": "running"})
            try:
                outcome = {"status": "done", **trial_fn(config["job"]["config"], report)}
            except Exception as e:  # noqa: BLE001 - recorded as the trial's outcome
                outcome = {"status": "failed", "error": _error_text(e)}
            top1 = outcome.get("top1")
            tune.report({"epoch": epochs, "top1": top1 if top1 is not None else 0.0, "status": outcome["status"],
                         "outcome": json.dumps(outcome)})

        class Record(tune.Callback):  # runs here, in the driver, as trials end
            def on_trial_complete(self, iteration, trials, trial, **info):
                res = trial.last_result or {}
                if "outcome" in res:
                    outcome = json.loads(res["outcome"])
                else:  # stopped by the scheduler after a per-epoch report
                    outcome = {"status": "stopped", "top1": res.get("top1"), "top5": res.get("top5"),
                               "epochs_run": res.get("epoch")}
                on_done(by_index[trial.config["job"]["index"]], outcome)

            def on_trial_error(self, iteration, trials, trial, **info):
                msg = "the trial's worker died (out of memory or killed?)"
                if trial.error_file and Path(trial.error_file).is_file():
                    lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
                    msg = lines[-1] if lines else msg
                on_done(by_index[trial.config["job"]["index"]], {"status": "failed", "error": msg})

        scheduler = None
        if self.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="epoch", max_t=max(1, epochs), grace_period=1, reduction_factor=2)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": self.cpus, "gpu": self.gpus}),
            param_space={"job": tune.grid_search(jobs)},
            tune_config=tune.TuneConfig(metric="top1", mode="max", scheduler=scheduler,
                                        max_concurrent_trials=self.max_concurrent),
            run_config=tune.RunConfig(name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}", storage_path=self.storage, callbacks=[Record()], verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)))
        tuner.fit()


def make_engine(name: str, **kw):
    if name == "local":
        return LocalEngine(kw.get("scheduler", "none"))
    if name == "ray":
        return RayEngine(**kw)
    raise SqueezeNetError(f"--engine must be one of {', '.join(ENGINES)}, got '{name}'")
