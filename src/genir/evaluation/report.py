"""The run report: report.md and report.json side by side, plus plots (docid distribution, training loss)."""

from __future__ import annotations

import json
from pathlib import Path

from genir.io import write_text

MAIN_METRICS = ["R@1", "R@10", "R@100", "MRR@10", "MRR@100", "nDCG@10", "nDCG@100"]


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if x != x:  # nan
            return "-"
        return f"{x:.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def plot_docid_distribution(folder: Path, out: Path) -> Path | None:
    """Documents per docid (collisions) and documents per first code, one figure per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from genir.docids.table import DocIdTable

    if not (folder / "docids" / "docids.json").exists():
        return None
    table = DocIdTable.load(folder / "docids")
    sizes = np.array(sorted((len(v) for v in table.groups().values()), reverse=True))
    from genir.docids.balance import diversity

    first = np.sort(table.code_frequencies(0))[::-1]
    d_first = diversity(table.codes[:, 0], table.vocab_size)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    used = first[first > 0]  # a 30k-word vocabulary (GLEN) would be 30k empty bars, slow to draw
    if len(used) > 256:
        axes[0].fill_between(np.arange(len(used)), used, step="post", color="#3b6ea8")
    else:
        axes[0].bar(np.arange(len(used)), used, width=1.0, color="#3b6ea8")
    axes[0].set_title(f"documents per first code ({len(used)} of {table.vocab_size} used, "
                      f"d = {d_first:.2f})")
    axes[0].set_xlabel("first code, by frequency")
    axes[0].set_ylabel("documents")
    counts = np.bincount(sizes)
    axes[1].bar(np.arange(1, len(counts)), counts[1:], color="#c0504d")
    axes[1].set_yscale("log")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set_title(f"documents per docid (collision rate {table.stats()['collision_rate']:.1%})")
    axes[1].set_xlabel("documents sharing a docid")
    axes[1].set_ylabel("docids")
    fig.suptitle(f"{folder.name}: {table.scheme} docids, {len(table)} documents")
    fig.tight_layout()
    path = out / f"docids_{folder.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_phases(train_info: dict) -> list[tuple[str, list, list]]:
    """(phase name, [(step, loss), ...], [(step, {figure: value}), ...]) of every training phase a method ran,
    in order (``phases`` in its train.json, with the held-out figures after each epoch where ``--holdout``
    gave some; a folder from before phases were recorded: its one ``history`` as one phase)."""
    phases = [(p["name"], p.get("history") or [], p.get("evaluations") or [])
              for p in train_info.get("phases") or []]
    if not phases and train_info.get("history"):
        phases = [("training", train_info["history"], [])]
    return [(name, hist, evals) for name, hist, evals in phases if hist]


def laid_end_to_end(phases: list[tuple[str, list, list]]) -> list[tuple[str, list[float], list[float], list]]:
    """The phases of :func:`training_phases` on one optimiser-step axis, each starting after the one before:
    (phase name, x of each loss, the losses, [(x, {figure: value}), ...] of its held-out evaluations)."""
    out, offset = [], 0.0
    for name, hist, evals in phases:
        first = min(float(h[0]) for h in hist)
        x = [offset + float(h[0]) - first + 1 for h in hist]
        out.append((name, x, [float(h[1]) for h in hist], [(offset + float(st) - first + 1, e) for st, e in evals]))
        offset = max(x)
    return out


def plot_training(systems: list[dict], out: Path, root: Path) -> Path | None:
    """One panel per method: every training phase's loss laid end to end on the optimiser-step axis, each
    phase its own colour and label, a dashed line where the next begins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = []
    for s in systems:
        p = root / s["name"] / "train.json"
        if s.get("kind") == "generative" and p.exists():
            phases = training_phases(json.loads(p.read_text()))
            if phases:
                curves.append((s["name"], phases))
    if not curves:
        return None
    fig, axes = plt.subplots(len(curves), 1, figsize=(7, 2.4 * len(curves)), squeeze=False)
    for ax, (name, phases) in zip(axes[:, 0], curves, strict=True):
        held_out = None
        for i, (phase, x, losses, evals) in enumerate(laid_end_to_end(phases)):
            w = max(1, len(losses) // 100)  # moving average for readability
            smooth = [sum(losses[max(0, j - w): j + 1]) / len(losses[max(0, j - w): j + 1]) for j in range(len(losses))]
            ax.plot(x, smooth, label=phase, color=f"C{i % 10}", marker="o" if len(x) < 3 else None, markersize=3)
            if evals:  # held-out nDCG@10 after each epoch, on its own axis
                held_out = held_out or ax.twinx()
                beam = evals[-1][1].get("beam")
                held_out.plot([st for st, _ in evals], [e["nDCG@10"] for _, e in evals],
                              color="black", marker="s", markersize=3, linewidth=1,
                              label=f"held-out nDCG@10 ({phase}" + (f", beam {beam})" if beam else ")"))
            if i:
                ax.axvline(min(x) - 1, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper right")
        if held_out is not None:
            held_out.set_ylabel("held-out nDCG@10")
            held_out.legend(fontsize=7, loc="upper center")
    axes[-1, 0].set_xlabel("optimiser step (phases end to end)")
    fig.tight_layout()
    path = out / "training_loss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_markdown(report: dict, plots: list[str], sections: dict[str, list[str]] | None = None) -> str:
    sections = sections or {}
    systems = report["systems"]
    subsets = list(systems[0]["metrics"]) if systems else []
    lines = [f"# genir report: {report['dataset']} ({report['test_split']})", ""]
    q = report["queries"]
    lines.append(f"{report['documents']:,} documents; test queries: " +
                 ", ".join(f"{k} {v}" for k, v in q.items()) + f". Device: {report['device']}.")
    if report.get("dataset_sha256"):
        lines.append(f"Dataset read from `{report.get('dataset_path')}`, content sha256 "
                     f"`{report['dataset_sha256'][:16]}`.")
    lines += [f"- {note}" for note in report.get("data_notes") or []]
    lines.append("")
    for f in report.get("failed") or []:
        lines += [f"**{f['name']} failed**: {f['error']}", ""]
    for sub in subsets:
        n = systems[0]["metrics"][sub]["n"]
        lines += [f"## Effectiveness, {sub} ({n} queries)", "",
                  "| system | " + " | ".join(MAIN_METRICS) + " |",
                  "|---|" + "---|" * len(MAIN_METRICS)]
        for s in systems:
            m = s["metrics"][sub]
            lines.append(f"| {s['label']} | " + " | ".join(_fmt(m.get(k)) for k in MAIN_METRICS) + " |")
        lines.append("")
    lines += ["## Efficiency", "",
              "| system | encoder | training s | indexing docs/s | queries/s (beam 10) "
              "| queries/s (beam 100 or as run) | index bytes/doc | stage fingerprint |",
              "|---|---|---|---|---|---|---|---|"]
    dense = next((s.get("queries_per_second") for s in systems if s.get("name") == "dense"), None)

    def speed(qps) -> str:
        return _fmt(qps, 1) + (f" ({qps / dense:.2f}x dense)" if qps and dense else "")

    for s in systems:
        lines.append(
            f"| {s['label']} | {s.get('encoder', '-')} | {_fmt(s.get('train_seconds'), 1)} "
            f"| {_fmt(s.get('indexing_docs_per_second'), 1)} | {speed(s.get('queries_per_second_beam10'))} "
            f"| {speed(s.get('queries_per_second'))} | {_fmt(s.get('index_bytes_per_doc'), 0)} "
            f"| `{s.get('fingerprint', '-')}` |")
    lines += ["", "x dense: queries/s over the dense row's, each measured when its stage searched "
              "(`bench/search_speed.py` interleaves them in one process). "
              "Generative indexing time = docid assignment + frozen-encoder caching + training. Generative "
              "index bytes = prefix tree + every non-encoder parameter (the model is the index); dense = "
              "embeddings; BM25 = the sparse score matrix. Stage fingerprint: a hash of what made the row (genir's "
              "version, the dataset's content, every setting the stage reads; each stage's `stage.json` lists them).",
              ""]
    gen = [s for s in systems if s.get("kind") == "generative"]
    if gen:
        lines += ["## Docids", "", "| method | distinct | collision rate | largest group | mean length | codes |",
                  "|---|---|---|---|---|---|"]
        for s in gen:
            d = s["docids"]
            lines.append(f"| {s['name']} | {d['distinct_docids']:,} | {d['collision_rate']:.2%} | "
                         f"{d['largest_group']} | {d['mean_length']:.2f} | {d['vocab_size']} |")
        lines.append("")
    for s in gen:  # each method's own figures, rendered by its recipe
        lines += sections.get(s["name"], [])
    rel = [s for s in gen if s.get("docid_relevance", {}).get("test")]
    if rel:
        width = max(len(s["docid_relevance"]["test"]) for s in rel)
        lines += ["Relevant documents' docids: distinct codes per level among each query's relevant documents "
                  "(queries with at least 2; MERGE Table 3; lower = relevant documents share more of their docid), "
                  "test / training queries:", "",
                  "| system | " + " | ".join(f"level {i + 1}" for i in range(width)) + " |",
                  "|---|" + "---|" * width]
        for s in rel:
            test, train = s["docid_relevance"]["test"], s["docid_relevance"].get("train") or []
            cells = [f"{test[i]:.2f}" + (f" / {train[i]:.2f}" if i < len(train) else "") if i < len(test) else "-"
                     for i in range(width)]
            lines.append(f"| {s['name']} | " + " | ".join(cells) + " |")
        lines.append("")
    for p in plots:
        lines += [f"![{p}]({p})", ""]
    lines += ["Metrics: ir_measures (pytrec_eval); R = recall, MRR = RR, nDCG with graded judgements; "
              "a query with no retrieved relevant document counts as 0. Run files: `*.trec`.", ""]
    return "\n".join(lines)


def write_report(report: dict, out: Path, sections: dict[str, list[str]] | None = None) -> None:
    """``sections``: markdown lines per system, placed after the docid table (a method's own figures)."""
    out = Path(out)
    plots = []
    for s in report["systems"]:
        if s.get("kind") == "generative":
            p = plot_docid_distribution(out / s["name"], out)
            if p:
                plots.append(p.name)
    p = plot_training(report["systems"], out, out)
    if p:
        plots.append(p.name)
    write_text(out / "report.json", json.dumps(report, indent=1, default=float))
    write_text(out / "report.md", render_markdown(report, plots, sections))
