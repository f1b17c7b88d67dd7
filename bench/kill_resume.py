"""Kill a `genir run` with SIGKILL at random moments, resume it each time, and compare the end result with an
uninterrupted run of the same command: docids, run files and metrics must be identical.

Usage:

    python bench/kill_resume.py                      # Cranfield slice, dsi-semantic + genret + bm25, 10 kills
    python bench/kill_resume.py --kills 10 --seed 1 --docs 300 --out bench_runs/kill_resume

The run is first made uninterrupted (twice, to show that it repeats bit for bit on this machine). Then one
run folder is started, killed after a random delay, started again with the same command, killed again, ...
(10 kills, each after the start-up plus a random share of the uninterrupted run's duration, so that they
spread over its stages and land wherever the run happens to be: encoding, k-means, a training step,
writing a checkpoint, searching, the report), and finally let finish.
Each kill point is recorded from the run's own progress output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

TIMING = re.compile(r"seconds|per_second|wall_|resumed")


def make_slice(shared: Path, out: Path, n_docs: int) -> Path:
    """Cranfield's split_train / split_test queries judged on the first ``n_docs`` judged documents."""
    src = shared / "cranfield"
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    qrels = {}
    for split in ("split_train", "split_test"):
        rows = [line.rstrip("\n").split("\t") for line in open(src / "qrels" / f"{split}.tsv", encoding="utf-8")][1:]
        qrels[split] = rows
    judged = []
    for rows in qrels.values():
        for _, d, g in rows:
            if int(g) > 0 and d not in judged:
                judged.append(d)
    keep = set(judged[:n_docs])
    with open(src / "corpus.jsonl", encoding="utf-8") as f, open(out / "corpus.jsonl", "w", encoding="utf-8") as o:
        for line in f:
            if json.loads(line)["_id"] in keep:
                o.write(line)
    used = set()
    for split, rows in qrels.items():
        kept = [r for r in rows if r[1] in keep]
        used |= {q for q, _, _ in kept}
        with open(out / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as o:
            o.write("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in kept))
    with open(src / "queries.jsonl", encoding="utf-8") as f, open(out / "queries.jsonl", "w", encoding="utf-8") as o:
        for line in f:
            if json.loads(line)["_id"] in used:
                o.write(line)
    return out


def command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "from genir.cli import app; app()", "run", "--dataset", str(data),
            "--train-split", "split_train", "--test-split", "split_test", "--method", "dsi-semantic",
            "--method", "genret", "--baseline", "bm25", "--epochs", "8", "--batch-size", "32", "--beam", "20",
            "--semantic-c", "10", "--set", "genret.codes=16", "--set", "genret.epochs=4",
            "--set", "genret.warmup_epochs=1", "--set", "genret.fit_epochs=4", "--set", "training.checkpoint_every=7",
            "--out", str(out)]


def outcome(folder: Path) -> dict[str, str]:
    """What the run produced, timing fields aside: docid tables, run files, and results (as hashes)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.name in ("docids.tsv",) or p.suffix == ".trec":
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        elif p.name in ("result.json",) or (p.parent.name == "baselines" and p.suffix == ".json"
                                            and not p.name.endswith("stage.json")):
            r = json.loads(p.read_text())
            out[rel] = json.dumps(_strip(r), sort_keys=True)
    return out


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if not TIMING.search(k)}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def where(log: str) -> str:
    """The last progress the killed process printed: stage and position."""
    parts = re.split(r"[\r\n]", log)
    for line in reversed(parts):
        line = line.strip()
        m = re.search(r"((?:train|genret|search|glen|Batches|baselines|encode)[^:|]*):\s*(\d+%)\|[^|]*\|\s*(\d+/\d+)",
                      line)
        if m:
            return f"{m.group(1).strip()} {m.group(3)}"
        if line.startswith(("genret step", "train ", "search ")):
            return line[:60]
    return "(before any progress bar: loading, encoding or writing)"


def run_to_end(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=Path("bench_runs/kill_resume"))
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--startup", type=float, default=8.0, help="seconds a restart takes before it works")
    ap.add_argument("--reuse", action="store_true", help="keep the uninterrupted runs already in --out")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    args.out.mkdir(parents=True, exist_ok=True)
    data = make_slice(args.shared, args.out / "cranfield-slice", args.docs)

    straight, again, killed = args.out / "straight", args.out / "straight2", args.out / "killed"
    reuse = args.reuse and all((p / "report.json").exists() for p in (straight, again))
    for p in ((killed,) if reuse else (straight, again, killed)):
        subprocess.run(["rm", "-rf", str(p)], check=True)
    if reuse:
        t, t2 = (json.loads((p / "report.json").read_text())["wall_seconds_this_invocation"] for p in (straight, again))
    else:
        t = run_to_end(command(data, straight), env)
        print(f"uninterrupted run: {t:.0f} s", flush=True)
        t2 = run_to_end(command(data, again), env)
    reference = outcome(straight)
    repeat_same = outcome(again) == reference
    print(f"uninterrupted runs: {t:.0f} s and {t2:.0f} s, identical outcome: {repeat_same}", flush=True)

    # each attempt is killed after its start-up (imports, loading: --startup seconds) plus a random share of
    # the run, 0.4 to 1.2 times duration / kills, so the kills spread over every stage and the run reaches
    # its end only after the last one
    share = min(t, t2) / args.kills
    kills = []
    while len(kills) < args.kills:
        delay = args.startup + rng.uniform(0.4, 1.2) * share
        proc = subprocess.Popen(command(data, killed), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=delay)
            if proc.returncode != 0:
                print(out.decode("utf-8", "replace")[-3000:])
                sys.exit(f"a resumed run failed (exit code {proc.returncode}) after {len(kills)} kills")
            # the run ended before this kill: start the whole series again, so that all kills hit one run
            print(f"the run finished before kill {len(kills) + 1}; starting the series over", flush=True)
            subprocess.run(["rm", "-rf", str(killed)], check=True)
            kills = []
            continue
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        log = out.decode("utf-8", "replace")
        kills.append({"delay_s": round(delay, 1), "where": where(log),
                      "resumed_from": re.findall(r"resumed from \S+ at step \d+", log)[-1:] or ""})
        print(f"kill {len(kills)} after {delay:.1f} s: {kills[-1]['where']}", flush=True)
    run_to_end(command(data, killed), env)
    result = outcome(killed)
    differing = sorted(k for k in set(reference) | set(result) if reference.get(k) != result.get(k))
    metrics = {}
    for name in ("dsi-semantic", "genret"):
        for label, folder in (("uninterrupted", straight), ("killed 10x", killed)):
            r = json.loads((folder / name / "result.json").read_text())["metrics"]["full"]
            metrics[f"{name} {label}"] = {m: round(r[m], 4) for m in ("nDCG@10", "R@100")}
    summary = {"uninterrupted_seconds": t, "repeat_identical": repeat_same, "kills": kills,
               "compared_files": len(reference), "differing": differing, "identical": not differing,
               "metrics": metrics}
    (args.out / "kill_resume.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    sys.exit(0 if not differing else 1)


if __name__ == "__main__":
    main()
