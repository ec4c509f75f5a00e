"""``squeezenet sweep``: the design-space exploration of the paper's section 5.

- :mod:`.space`    which points: the Fig. 3 grid, or a random / TPE search (torch-free)
- :mod:`.config`   :class:`SweepSettings`, the flags' one source (torch-free)
- :mod:`.trial`    ``run_trial(config, report)``: one point, a pure function
- :mod:`.engines`  where trials run: ``local`` (this process) or ``ray`` (Ray Tune)
- :mod:`.driver`   :func:`sweep`: the folder, resume, budgets, the search loop
- :mod:`.report`   ``sweep.md``, the table and the plots (Pareto front)

The torch-using parts load on first use, so ``squeezenet --help`` stays torch-free.
"""

from .config import SweepSettings
from .space import PCT_GRID, SPACE, SR_GRID, grid_points, point_name

__all__ = ["sweep", "SweepSettings", "run_trial", "grid_points", "point_name", "SPACE", "SR_GRID", "PCT_GRID"]


def __getattr__(name):
    if name == "sweep":
        from .driver import sweep

        return sweep
    if name == "run_trial":
        from .trial import run_trial

        return run_trial
    raise AttributeError(f"module 'squeezenet.sweep' has no attribute '{name}'")
