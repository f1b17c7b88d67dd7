"""Held-out nDCG@10 during training, several runs on one plot: the figures a ``--holdout`` run's training
loop measures after every epoch (``evaluations`` in the method's ``train.json``), so two settings can be
compared along their whole curve instead of at the last checkpoint alone.

    python bench/heldout_curves.py R/ho-s1-genret:genret R/ho-s1-rw01-genret:genret --last 10 --plot curves.png

Each argument is RUN_FOLDER:METHOD[=LABEL]. Prints, per run, the evaluations' count, the last one, and the
mean, min and max of the last ``--last`` (the figure to compare: one checkpoint moves by more than the
settings' difference). A run without held-out evaluations is an error, not an empty row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import NoReturn

from genir.evaluation.report import laid_end_to_end, training_phases


def fail(message: str) -> NoReturn:
    """Bad input: the message, exit code 2, no traceback."""
    print(f"heldout_curves: {message}", file=sys.stderr)
    raise SystemExit(2)


def curve(run: Path, method: str) -> list[tuple[int, float]]:
    """(step, nDCG@10) of every held-out evaluation in the run's training phases, on the report's step axis."""
    path = run / method / "train.json"
    if not path.exists():
        fail(f"{path}: no such file (is {method!r} a method of the run {run}?)")
    try:
        phases = laid_end_to_end(training_phases(json.loads(path.read_text())))
        points = [(step, float(figures["nDCG@10"])) for *_, evaluations in phases for step, figures in evaluations]
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # ValueError: JSONDecodeError among them
        fail(f"{path}: not a training record genir writes ({type(e).__name__}: {e})")
    if not points:
        fail(f"{path}: no held-out evaluations (was the run made with --holdout?)")
    return points


def parse(spec: str) -> tuple[Path, str, str]:
    target, _, label = spec.partition("=")
    run, sep, method = target.rpartition(":")
    if not sep or not run or not method:
        fail(f"{spec!r}: expected RUN_FOLDER:METHOD[=LABEL]")
    return Path(run), method, label or f"{Path(run).name} {method}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="RUN_FOLDER:METHOD[=LABEL]")
    ap.add_argument("--last", type=int, default=10, help="how many of the last evaluations to average")
    ap.add_argument("--plot", type=Path, help="write the curves to this PNG")
    args = ap.parse_args(argv)
    if args.last < 1:
        fail(f"--last {args.last}: expected at least 1 evaluation to average")
    rows = [(label, curve(run, method)) for run, method, label in map(parse, args.runs)]
    print(f"| run | evaluations | last | mean of last {args.last} | range |")
    print("|---|---|---|---|---|")
    for label, points in rows:
        tail = [v for _, v in points[-args.last:]]
        print(f"| {label} | {len(points)} | {points[-1][1]:.3f} | {statistics.fmean(tail):.3f} | "
              f"{min(tail):.3f}-{max(tail):.3f} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2))
        for i, (label, points) in enumerate(rows):
            ax.plot(*zip(*points, strict=True), label=label, color=f"C{i % 10}", linewidth=1.2)
        ax.set_xlabel("optimiser step (phases end to end)")
        ax.set_ylabel("held-out nDCG@10")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
