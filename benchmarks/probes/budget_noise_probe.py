"""How close to its time budget does a run end on a noisy host? The planner on a fake clock.

    python benchmarks/probes/budget_noise_probe.py [--runs 200] [--sigma 0.12] [--last-check 0.95]

Each simulated run drives ``budget.BudgetPlanner`` as ``train.TimeBudget`` does. The step
time is the measured one times a factor redrawn every 50 steps (log-normal, ``--sigma``:
hosts of this kind swing by 10-20% over seconds, BENCHMARKS 2.0.5), times a lasting shift
from 60% of the run on (x1, x0.8 or x1.25: the host speeds up or slows down); evaluations
vary by +-15% and the last one is followed by the flip-TTA pass. Two ways of checking:

  epoch      the step time of the whole epoch, at epoch ends only (before session 15);
  interval   also four times within each epoch, from the steps since the last check (now).

Prints, per budget shape and shift, the mean, min and max share of the budget used and how
many runs ended outside [95%, 100%].
"""

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import squeezenet.budget as budget  # noqa: E402

# (budget s, steps per epoch, step s, evaluation s): the 90 s demo, a 10-minute demo, CIFAR-10 15 minutes on one core
SHAPES = ((90, 468, 0.055, 4.0), (600, 421, 0.06, 4.0), (900, 351, 0.9, 15.0))


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def simulate(shape, mode: str, seed: int, shift: float, sigma: float) -> float:
    budget_s, spe, step_s, eval_s = shape
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
            total, mark = p.plan(step, (clock.t - mark[1]) / measured, eval_s).total_steps, (step, clock.t)
        elif mode == "interval" and p.check_due(step, measured):
            new = p.maybe_replan(step, (clock.t - mark[1]) / measured, eval_s)
            total, mark = new.total_steps if new else total, (step, clock.t)
        if step % spe == 0 or step >= total:
            trained_at = clock.t
            clock.t += eval_s * rng.uniform(0.85, 1.15) + (eval_s if step >= total else 0.0)
            if p.plans and step < total:
                new = p.maybe_replan(step, (trained_at - mark[1]) / (step - mark[0]), eval_s)
                total = new.total_steps if new else total
            mark = (step, clock.t)
    return clock.t / budget_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--sigma", type=float, default=0.12)
    ap.add_argument("--last-check", type=float, default=budget.LAST_CHECK)
    a = ap.parse_args()
    budget.LAST_CHECK = a.last_check
    print("| budget | shift at 60% | checks | mean used | min | max | outside 95-100% |\n|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        for shift in (1.0, 0.8, 1.25):
            for mode in ("epoch", "interval"):
                used = [simulate(shape, mode, seed, shift, a.sigma) for seed in range(a.runs)]
                out = sum(not 0.95 <= u <= 1.0 for u in used)
                print(f"| {shape[0]} s | x{shift:g} | {mode} | {statistics.mean(used):.1%} | {min(used):.1%} | "
                      f"{max(used):.1%} | {out}/{a.runs} |")


if __name__ == "__main__":
    main()
