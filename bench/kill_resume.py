"""Kill a `genir run` with SIGKILL at random moments, resume it each time, and compare the end result with an
uninterrupted run of the same command: docids, run files and metrics must be identical.

Usage:

    python bench/kill_resume.py                      # Cranfield slice, dsi-semantic + genret + bm25, 10 kills
    python bench/kill_resume.py --kills 10 --seed 1 --docs 300 --out bench_runs/kill_resume

The run is first made uninterrupted (twice, to show that it repeats bit for bit on this machine). Then one
run folder is started, killed after a random delay, started again with the same command, killed again, ...
(10 kills, each a random 0.3 to 1.3 times duration / 10 after the attempt starts working — its first
progress bar — so that they spread over the stages and land wherever the run happens to be: encoding,
k-means, a training step, writing a checkpoint, searching, the report), and finally let finish.
Each kill point is recorded from the run's own progress output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
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
            "--method", "genret", "--baseline", "bm25", "--epochs", "20", "--batch-size", "32", "--beam", "20",
            "--semantic-c", "10", "--set", "genret.codes=16", "--set", "genret.epochs=8",
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


PROGRESS = re.compile(r"\d+%\|")


def attempt(cmd: list[str], env: dict, delay: float) -> tuple[int | None, str]:
    """Start the run; SIGKILL it ``delay`` seconds after its first progress bar. (exit code or None when
    killed, its output)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    chunks: list[bytes] = []
    working = threading.Event()

    def read() -> None:
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            chunks.append(chunk)
            if PROGRESS.search(chunk.decode("utf-8", "replace")):
                working.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not working.wait(0.1):
        if proc.poll() is not None:
            break
    if proc.poll() is None:
        time.sleep(delay)
    code = proc.poll()
    if code is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reader.join()
    return code, b"".join(chunks).decode("utf-8", "replace")


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

    # an attempt is killed a random time after it starts working (its first progress bar: loading and
    # imports excluded), 0.3 to 1.3 times duration / kills, so the kills spread over the stages
    share = min(t, t2) / args.kills
    kills: list[dict] = []

    def seed_cache() -> None:
        """The dense document embeddings (a cache keyed by dataset and model, not a stage) are copied in: their
        encoding is one unresumable unit longer than most kill delays, and would catch every kill."""
        killed.mkdir(parents=True, exist_ok=True)
        for name in ("doc_embeddings.npy", "doc_embeddings.json"):
            shutil.copy(straight / name, killed / name)

    seed_cache()
    while len(kills) < args.kills:
        delay = rng.uniform(0.3, 1.3) * share
        finished, log = attempt(command(data, killed), env, delay)
        if finished is not None:
            if finished != 0:
                print(log[-3000:])
                sys.exit(f"a resumed run failed (exit code {finished}) after {len(kills)} kills")
            # the run ended before this kill: start the whole series again, so that all kills hit one run
            print(f"the run finished before kill {len(kills) + 1}; starting the series over", flush=True)
            subprocess.run(["rm", "-rf", str(killed)], check=True)
            seed_cache()
            kills = []
            continue
        kills.append({"after_start_of_work_s": round(delay, 1), "where": where(log),
                      "resumed_from": re.findall(r"resumed from \S+ at step \d+", log)[-1:] or ""})
        print(f"kill {len(kills)} {delay:.1f} s into work: {kills[-1]['where']}", flush=True)
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
