"""How close to its time budget does a run end on a noisy host? The planner on a fake clock.

    python benchmarks/probes/budget_noise_probe.py [--runs 200] [--sigma 0.12] [--last-check 0.95]

Each simulated run drives ``budget.BudgetPlanner`` as ``train.TimeBudget`` does. The step
time is the measured one times a factor redrawn every 50 steps (log-normal, ``--sigma``:
hosts of this kind swing by 10-20% over seconds, BENCHMARKS 2.0.5), times a lasting shift
from 60% of the run on (x1, x0.8 or x1.25: the host speeds up or slows down); evaluations
vary by +-15% and the last one is followed by the flip-TTA pass. Two ways of checking:

  epoch      the step time of the whole epoch, at epoch ends only (before session 15);
  interval   also four times within each epoch, from the steps since the last check alone
             (sessions 15-19);
  window     the same checks, the step time averaged over the latest 5% of the budget
             (``budget.RATE_WINDOW``) and the on-time band's early edge widened by 5% of the time still
             to run (``budget.ON_TIME_SLACK``) (session 20, now).

Prints, per budget shape and shift, the mean, min and max share of the budget used, how
many runs ended outside [95%, 100%], the mean number of plans, and the mean spread
(max / min) of the total steps planned after the first quarter of the run: how far the
learning-rate schedule was moved about by re-plans.
"""

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import squeezenet.budget as budget  # noqa: E402

# (budget s, steps per epoch, step s, evaluation s): the 90 s demo, a 10-minute demo, CIFAR-10 15 minutes on one
# core, CIFAR-10 30 minutes on two (session 19: 74 ms steps, 2 s evaluations)
SHAPES = ((90, 468, 0.055, 4.0), (600, 421, 0.06, 4.0), (900, 351, 0.9, 15.0), (1800, 351, 0.074, 2.0))
NOW = (budget.RATE_WINDOW, budget.ON_TIME_SLACK)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def simulate(shape, mode: str, seed: int, shift: float, sigma: float) -> tuple[float, int, float]:
    """(share of the budget used, plans made, max / min total steps planned after a quarter of the run)."""
    budget_s, spe, step_s, eval_s = shape
    budget.RATE_WINDOW, budget.ON_TIME_SLACK = NOW if mode == "window" else (0.0, 0.0)
    rng, clock = random.Random(seed), Clock()
    p = budget.BudgetPlanner(budget_s, spe, clock, final_evals=1.0)
    p.start()
    total, step, mark, factor = 10 ** 9, 0, (0, 0.0), 1.0
    shift_at = int(0.6 * budget_s / step_s)
    while step < total:
        if step % 50 == 0:
            factor = rng.lognormvariate(0, sigma)
        clock.t += step_s * factor * (shift if step >= shift_at else 1.0)
        step += 1
        measured = step - mark[0]
        if not p.plans and step == p.untimed_steps():
            mark = (step, clock.t)
        elif not p.plans and step > p.untimed_steps() and measured == p.measure_steps():
            total, mark = p.plan(step, p.observe(measured, clock.t - mark[1]), eval_s).total_steps, (step, clock.t)
        elif mode != "epoch" and p.check_due(step, measured):
            new = p.maybe_replan(step, p.observe(measured, clock.t - mark[1]), eval_s)
            total, mark = new.total_steps if new else total, (step, clock.t)
        if step % spe == 0 or step >= total:
            trained_at = clock.t
            clock.t += eval_s * rng.uniform(0.85, 1.15) + (eval_s if step >= total else 0.0)
            if p.plans and step < total:
                new = p.maybe_replan(step, p.observe(step - mark[0], trained_at - mark[1]), eval_s)
                total = new.total_steps if new else total
            mark = (step, clock.t)
    late = [q.total_steps for q in p.plans if q.at_step >= step / 4] or [p.plans[-1].total_steps]
    return clock.t / budget_s, len(p.plans), max(late) / min(late)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--sigma", type=float, default=0.12)
    ap.add_argument("--last-check", type=float, default=budget.LAST_CHECK)
    a = ap.parse_args()
    budget.LAST_CHECK = a.last_check
    print("| budget | shift at 60% | checks | mean used | min | max | outside 95-100% | plans (mean) | "
          "total steps max/min after 1/4 (mean) |\n|---|---|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        for shift in (1.0, 0.8, 1.25):
            for mode in ("epoch", "interval", "window"):
                runs = [simulate(shape, mode, seed, shift, a.sigma) for seed in range(a.runs)]
                used = [r[0] for r in runs]
                out = sum(not 0.95 <= u <= 1.0 for u in used)
                print(f"| {shape[0]} s | x{shift:g} | {mode} | {statistics.mean(used):.1%} | {min(used):.1%} | "
                      f"{max(used):.1%} | {out}/{a.runs} | {statistics.mean(r[1] for r in runs):.1f} | "
                      f"{statistics.mean(r[2] for r in runs):.3f} |")


if __name__ == "__main__":
    main()
