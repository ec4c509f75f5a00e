"""Train to a time budget: ``squeezenet train --time-budget 10m``.

The whole learning-rate schedule (warm-up and decay) is fitted to the clock, evaluation
included, rather than cut off when the time is up (Lightning's ``max_time`` stops a run;
timm, torchvision's references and airbench fix the epochs):

1. **Measure.** After :data:`UNTIMED_STEPS` untimed steps (their one-off costs, such as
   cuDNN's autotuning, made a GPU's first plan 2.7x too slow), the next steps
   (:data:`MEASURE_STEPS`, or fewer in a short budget) are timed; one evaluation batch is
   timed to price an evaluation pass.
2. **Plan.** ``total steps = (time left - evaluations - checkpoints - margin) / step
   time``; an evaluation runs after every full epoch and once at the end. Under
   ``--progressive-resizing`` steps differ in cost, so steps and step times are counted
   in full-size steps (:attr:`BudgetPlanner.work`, :func:`squeezenet.resizing.work`).
3. **Re-plan.** After every epoch, and a few times within each (:data:`CHECKS_PER_EPOCH`:
   a short budget has only two or three epochs, and a host that speeds up or slows down
   in the last one would otherwise end the run short of the budget or past it), the
   measured step time is compared with the plan's. The step time is the mean over the
   latest :data:`RATE_WINDOW` of the budget (at least the interval since the last
   check): a check interval lasts a few seconds, and on a shared host its rate alone
   swung by +-15%, so a 30-minute CIFAR-10 run re-planned 134 times and its total steps,
   and with them the learning rate at a given step, jumped between 19,300 and 25,800
   (docs/BENCHMARKS.md 2.0.11). More than 10% off, or far enough off
   that the plan would end past the budget or more than 1% short of its margin, the remaining
   steps are fitted again to the remaining time. The early edge of that band is widened by
   :data:`ON_TIME_SLACK` of the time still to run: a step time known to within a few per
   cent projects a far end less precisely than a near one, and the band narrows to 1% as
   the end approaches. The late edge is not widened: an overrun is the failure that
   matters, and a simulation (``benchmarks/probes/budget_noise_probe.py``) showed short
   budgets ending past it more often with it widened. Checks stop at :data:`LAST_CHECK` of the
   planned steps, so the end of the decay is not moved.

The clock is injected, so the planner is tested with a fake one (no timed tests). On
``--resume`` the remaining budget is the budget minus the time already spent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .errors import SqueezeNetError

UNTIMED_STEPS = 5  # first steps left out of the first measurement (their time still counts as spent)
MEASURE_STEPS = 30  # steps timed before the first plan
REPLAN_DRIFT = 0.10  # re-plan when the step time drifts by more than this
MARGIN = 0.02  # of the budget, kept free for the report and the last checkpoint
CHECKS_PER_EPOCH = 4  # step-time checks within an epoch (at least MEASURE_STEPS apart)
LAST_CHECK = 0.95  # no re-plan after this share of the planned steps
ON_TIME = 0.01  # a plan projected to end more than this (of the budget) short of its margin is re-made
RATE_WINDOW = 0.05  # of the budget: the training time the step time is averaged over (at least one interval)
ON_TIME_SLACK = 0.05  # of the time still to run: widens the on-time band's early edge, to nothing at the end

_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in ``1h30m``, ``10m``, ``90s``, ``2.5m`` or a bare number of seconds."""
    s = str(text).strip().lower().replace(" ", "")
    try:
        seconds = float(s)
    except ValueError:
        m = _DURATION.match(s)
        if not s or not m or not any(m.groups()):
            raise SqueezeNetError(f"--time-budget '{text}' is not a duration; write it as 90s, 10m, 1h30m or a number "
                                  "of seconds") from None
        seconds = sum(float(v) * _UNIT[u] for v, u in zip(m.groups(), "hms") if v)
    if not math.isfinite(seconds) or seconds < 10:
        raise SqueezeNetError(f"--time-budget '{text}' is too short: at least 10 s are needed to measure the step "
                              "rate and plan the schedule")
    return seconds


def format_duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass
class Plan:
    """How many optimizer steps fit, and why."""

    total_steps: int
    step_s: float  # seconds per optimizer step, as measured
    eval_s: float  # seconds per evaluation pass, as estimated
    evals: int  # evaluation passes the plan pays for
    planned_s: float  # what the plan expects the whole run to take
    at_step: int  # the global step the plan was made at


@dataclass
class BudgetPlanner:
    """Fits the number of training steps to a time budget (seconds).

    ``spent`` is the time already used (a resumed run's); ``clock`` returns seconds (a
    fake one in tests). The run calls :meth:`start` when training starts,
    :meth:`plan` after :data:`MEASURE_STEPS` steps and :meth:`maybe_replan` after each
    epoch; :attr:`plans` keeps every plan for the report."""

    budget_s: float
    steps_per_epoch: int
    clock: object
    spent: float = 0.0
    plans: list = field(default_factory=list)
    final_evals: float = 0.0  # extra evaluation passes at the end (the flip-TTA check: 1)
    work: object = None  # (start, end, total) -> steps start..end of a total-step schedule in full-cost steps
    _t0: float = 0.0
    _intervals: list = field(default_factory=list)  # (steps, seconds) of the latest checked intervals

    def start(self) -> None:
        self._t0 = self.clock()

    def elapsed(self) -> float:
        """Budget used so far, earlier sessions of a resumed run included."""
        return self.spent + (self.clock() - self._t0)

    def steps_work(self, start: int, end: int, total: int) -> float:
        """Steps ``start`` to ``end`` of a ``total``-step schedule in full-cost steps: their
        number, or :attr:`work`'s count where steps differ in cost (progressive resizing,
        :func:`squeezenet.resizing.work`). Step times are per full-cost step."""
        return float(end - start) if self.work is None else self.work(start, end, total)

    def observe(self, steps: float, seconds: float) -> float:
        """Record a checked interval (``steps`` full-cost steps, :meth:`steps_work`, taking
        ``seconds`` of training, evaluation excluded) and return the step time to plan
        with: the mean over the latest intervals that together span at most
        :data:`RATE_WINDOW` of the budget, and at
        least this one. Short intervals on a shared host are noisy; a sustained change
        still moves the mean within the window."""
        self._intervals.append((steps, seconds))
        n, t, keep = 0, 0.0, 0
        for st, sec in reversed(self._intervals):
            if keep and t + sec > RATE_WINDOW * self.budget_s:
                break
            n, t, keep = n + st, t + sec, keep + 1
        del self._intervals[:-keep]
        return t / n

    def untimed_steps(self) -> int:
        return min(UNTIMED_STEPS, self.steps_per_epoch // 8)

    def measure_steps(self) -> int:
        return max(3, min(MEASURE_STEPS, self.steps_per_epoch // 2))

    def check_every(self) -> int:
        """Steps between step-time checks within an epoch."""
        return max(self.measure_steps(), self.steps_per_epoch // CHECKS_PER_EPOCH)

    def check_due(self, done_steps: int, measured_steps: int) -> bool:
        """Whether to check the step time now, mid-epoch: :meth:`check_every` steps have
        run since the last check point (an epoch end, the first plan or a check), at least
        as many remain before the epoch's end (whose own check then measures a full
        interval, not a step or two), and the schedule is not in its last stretch."""
        every, in_epoch = self.check_every(), done_steps % self.steps_per_epoch
        return (bool(self.plans) and measured_steps >= every and 0 < in_epoch <= self.steps_per_epoch - every
                and done_steps < LAST_CHECK * self.plans[-1].total_steps)

    def cost(self, done_steps: int, steps: int, step_s: float, eval_s: float, save_s: float) -> float:
        """Seconds that ``steps`` more steps take from ``done_steps`` on: the steps, an
        evaluation and a checkpoint at each epoch end they reach, a last evaluation where
        they stop mid-epoch, and the :attr:`final_evals` passes after the end."""
        spe, end = self.steps_per_epoch, done_steps + steps
        evals = end // spe - done_steps // spe + (1 if end % spe else 0)
        return self.steps_work(done_steps, end, end) * step_s + evals * (eval_s + save_s) + self.final_evals * eval_s

    def plan(self, done_steps: int, step_s: float, eval_s: float, save_s: float = 0.0) -> Plan:
        """The most steps whose schedule, evaluations and checkpoints end inside the
        budget (less a 2% margin for the report), recorded in :attr:`plans`."""
        p = self._fit(done_steps, step_s, eval_s, save_s)
        self.plans.append(p)
        return p

    def _fit(self, done_steps: int, step_s: float, eval_s: float, save_s: float) -> Plan:
        if step_s <= 0:
            raise ValueError("step time must be positive")
        left = self.budget_s * (1 - MARGIN) - self.elapsed()
        lo, hi = 0, max(0, int(left / step_s))
        while hi and self.cost(done_steps, hi, step_s, eval_s, save_s) <= left:  # cheaper steps: more fit
            lo, hi = hi, 2 * hi
        while lo < hi:  # the cost only grows with the steps: the largest that fits
            mid = (lo + hi + 1) // 2
            if self.cost(done_steps, mid, step_s, eval_s, save_s) <= left:
                lo = mid
            else:
                hi = mid - 1
        total, spe = done_steps + lo, self.steps_per_epoch
        if total < spe and not self.plans:  # a re-plan may end the schedule inside epoch 1
            need = self.elapsed() + self.cost(done_steps, spe - done_steps, step_s, eval_s, save_s)
            raise SqueezeNetError(f"--time-budget {format_duration(self.budget_s)} is too short for one epoch here: "
                                  f"{spe} steps at {step_s * 1000:.0f} ms each plus an evaluation of "
                                  f"{eval_s:.1f} s need about {format_duration(need / (1 - MARGIN))}; give a longer "
                                  "budget, a smaller model or --train-subset")
        evals = total // spe - done_steps // spe + (1 if total % spe else 0)
        return Plan(total, step_s, eval_s, evals, self.elapsed() + self.cost(done_steps, lo, step_s, eval_s, save_s),
                    done_steps)

    def maybe_replan(self, done_steps: int, step_s: float, eval_s: float, save_s: float = 0.0) -> Plan | None:
        """At an epoch end or a mid-epoch check (``eval_s``: the evaluation and
        checkpoint an epoch end costs), a new plan when the measured step time is more than 10% off the current
        plan's, or when at that rate the plan would end past the budget or more than
        :data:`ON_TIME` short of its margin; None otherwise (or when training is over)."""
        cur = self.plans[-1]
        if done_steps >= cur.total_steps:
            return None
        remaining = self.cost(done_steps, cur.total_steps - done_steps, step_s, eval_s, save_s)
        projected = self.elapsed() + remaining
        slack = ON_TIME_SLACK * remaining  # a step time known to a few % tells a far end less well than a near one
        on_time = self.budget_s * (1 - MARGIN - ON_TIME) - slack <= projected <= self.budget_s * (1 - MARGIN / 2)
        if abs(step_s - cur.step_s) <= REPLAN_DRIFT * cur.step_s and on_time:
            return None
        new = self._fit(done_steps, step_s, eval_s, save_s)
        if new.total_steps == cur.total_steps:  # the same schedule: not a new plan
            return None
        self.plans.append(new)
        return new
