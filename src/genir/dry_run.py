"""``genir run --dry-run``: every check a run makes before it works, the settings each stage would run with
and the optimiser steps of each training phase; nothing is trained, searched or written."""

from __future__ import annotations

from typing import Any

from genir.methods import check_read, get_method
from genir.pipeline import Pipeline
from genir.settings import Settings


def plan(settings: Settings, redo: set[str] | None = None, fresh: bool = False) -> dict[str, Any]:
    """What ``genir run`` would do with these settings: the inputs read and checked as the run checks them,
    and per stage its status in ``--out`` (new, reused, recomputed, or differing: the run would stop), its
    resolved settings (its fingerprint's keys) and, for a method, its training phases with their steps."""
    check_read(settings)
    pipeline = Pipeline(settings, redo, fresh)
    ws, settings = pipeline.ws, pipeline.settings
    pipeline.prepare()
    out = []
    for stage in pipeline.stages.values():
        train, search = stage.differences()
        if not stage.exists():
            status = "new"
        elif fresh or stage.name in pipeline.redo:
            status = "searched again" if search and not train else "recomputed"
        elif not (train or search):
            status = "reused"
        else:
            status = "differs: the run would stop (--redo or --fresh)"
        entry = {"name": stage.name, "status": status, "differences": train + search,
                 "settings": {**stage.fingerprint.train, **stage.fingerprint.search}, "phases": []}
        if stage.name in settings.methods:
            for phase in get_method(stage.name).phases(pipeline.view(get_method(stage.name))):
                entry["phases"].append({"name": phase.name, "epochs": phase.epochs, "batch_size": phase.batch_size,
                                        "lr": phase.lr, "examples": phase.examples, "repeats": phase.repeats,
                                        "grad_accumulation": phase.grad_accumulation, "steps": phase.steps,
                                        "at_most": phase.at_most})
        out.append(entry)
    return {"dataset": ws.collection.name, "documents": len(ws.docs), "out": str(ws.out),
            "test_queries": len(ws.test_queries), "stages": out}


def render(plan: dict[str, Any], show_settings: bool = True) -> str:
    lines = [f"dry run: {plan['dataset']} ({plan['documents']:,} documents, {plan['test_queries']:,} test queries), "
             f"--out {plan['out']}; nothing was trained or written", ""]
    for stage in plan["stages"]:
        lines.append(f"{stage['name']}: {stage['status']}")
        lines += [f"    differs: {d}" for d in stage["differences"]]
        if stage["phases"]:
            lines.append("  phase                                   epochs   batch        lr   examples  x  steps")
        for p in stage["phases"]:
            accum = f" (x{p['grad_accumulation']} accumulation)" if p["grad_accumulation"] > 1 else ""
            steps = f"{'<= ' if p['at_most'] else ''}{p['steps']:,}"
            lines.append(f"  {p['name']:<38} {p['epochs']:>7g} {p['batch_size']:>7} {p['lr']:>9.2e} "
                         f"{p['examples']:>10,} {p['repeats']:>2} {steps:>6}{accum}")
        if show_settings:
            lines.append("  settings: " + ", ".join(f"{k}={v}" for k, v in sorted(stage["settings"].items())
                                                  if k not in ("genir", "dataset.sha256")))
        lines.append("")
    return "\n".join(lines)
