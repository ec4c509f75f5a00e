"""How much did a budgeted run's re-plans move its learning-rate schedule? From report.md.

    python benchmarks/probes/plan_jitter.py RUN [RUN ...]

A time-budgeted run's schedule (warm-up and cosine decay) spans the planned total steps,
so each re-plan that changes the total moves the learning rate every later step gets.
For each run folder (or a folder holding one ``budget_*`` run, as time_to_accuracy.py
writes), prints the plans made, the total steps planned after the first quarter of the
run (min, max and max / min), the budget used, the steps run and the final top-1.
"""

import re
import sys
from pathlib import Path

PLAN = re.compile(r"at step ([\d,]+): ([\d.]+) ms/step, evaluation ([\d.]+) s, ([\d,]+) steps")
USED = re.compile(r"actual (\S+) \(training, evaluation and checkpoints; ([\d.]+)% of the budget\); schedule of "
                  r"([\d,]+) steps")
TOP1 = re.compile(r"\| final test top-1 \| ([\d.]+)%")


def summary(run: Path) -> str:
    report = run / "report.md" if (run / "report.md").is_file() else next(run.glob("budget_*/report.md"))
    text = report.read_text()
    plans = [(int(a.replace(",", "")), float(ms), int(t.replace(",", ""))) for a, ms, _, t in PLAN.findall(text)]
    used = USED.search(text)
    steps = int(used.group(3).replace(",", ""))
    late = [t for a, _, t in plans if a >= steps / 4] or [plans[-1][2]]
    top1 = TOP1.search(text)
    return (f"| {run} | {len(plans)} | {min(late):,}-{max(late):,} | {max(late) / min(late):.3f} | "
            f"{min(ms for _, ms, _ in plans):.1f}-{max(ms for _, ms, _ in plans):.1f} | {used.group(2)}% | {steps:,} | "
            f"{top1.group(1) if top1 else '-'} |")


def main() -> None:
    print("| run | plans | total steps planned after 1/4 of the run | max / min | ms/step of the plans | budget used | "
          "steps | top-1 % |\n|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(summary(Path(arg)))


if __name__ == "__main__":
    main()
