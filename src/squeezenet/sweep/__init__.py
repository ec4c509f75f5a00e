"""``squeezenet sweep``: the design-space exploration of the paper's section 5.

- :mod:`.space`    which points: the Fig. 3 grid, or a random / TPE search (torch-free)
- :mod:`.trial`    ``run_trial(config, report)``: one point, a pure function
- :mod:`.engines`  where trials run: ``local`` (this process) or ``ray`` (Ray Tune)
- :mod:`.driver`   :func:`sweep`: the folder, resume, budgets, the search loop
- :mod:`.report`   ``sweep.md``, the table and the plots (Pareto front)
"""

from .driver import SweepSettings, sweep
from .space import SPACE, SR_GRID, PCT_GRID, grid_points, point_name
from .trial import run_trial

__all__ = ["sweep", "SweepSettings", "run_trial", "grid_points", "point_name", "SPACE", "SR_GRID",
           "PCT_GRID"]
