"""Malformed inputs fed to the genir CLI: each must be refused with exit code 2, a message naming the file
(and line) or the setting, no traceback, and no output left behind.

Usage:

    python bench/bad_inputs.py                 # every case, each in a fresh `genir` process
    python bench/bad_inputs.py --table out.md  # ... and the results as a markdown table

A small valid collection is written to a temporary folder; each case breaks one thing in a copy of it
(a corpus line, a grade, a flag, a file of a trained run folder) and runs one command. A run folder for
the search / serve / transfer cases is trained once (dsi-atomic, a few steps, the bundled MiniLM).
``tests/test_bad_inputs.py`` runs a fast subset of these cases in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

WORDS = ("protein cell gene vitamin bone fracture tumour virus immune insulin brain heart liver kidney "
         "muscle blood lung skin sleep diet").split()


def write_collection(folder: Path, n_docs: int = 24) -> Path:
    """A valid BEIR folder: documents of a few words, queries with train and test judgements."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = [{"_id": f"d{i}", "title": f"study {i}",
             "text": " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12))} for i in range(n_docs)]
    queries = [{"_id": f"q{i}", "text": f"{WORDS[i % len(WORDS)]} {WORDS[(i * 3) % len(WORDS)]}"}
               for i in range(12)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (folder / "qrels").mkdir(exist_ok=True)
    rows = {"train": [(f"q{i}", f"d{i}", 1) for i in range(8)], "test": [(f"q{i}", f"d{i + 8}", 1)
                                                                         for i in range(8, 12)]}
    for split, rs in rows.items():
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in rs), encoding="utf-8")
    return folder


class Evil:
    """Unpickling this writes a marker file: the proof that a loader executed code from a run folder."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@dataclass
class Case:
    name: str
    kind: str  # corpus | queries | qrels | settings | config | run file | run folder | ...
    args: Callable[[Path], list[str]]  # (work folder) -> CLI arguments
    expect: str  # the message must contain this (a file name, a setting, ...)
    setup: Callable[[Path], None] = lambda work: None  # breaks something in the work folder
    needs_run: bool = False  # uses the trained run folder (work / "run")
    fast: bool = False  # in the test suite's subset
    watched: list[str] = field(default_factory=lambda: ["out"])  # must not exist afterwards


def _edit(rel: str, fn: Callable[[str], str]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        p = work / rel
        p.write_text(fn(p.read_text(encoding="utf-8")), encoding="utf-8")
    return setup


def _bytes(rel: str, data: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        p = work / rel
        p.write_bytes(data(p.read_bytes() if p.exists() else b""))
    return setup


def _line(rel: str, line_no: int, new: str) -> Callable[[Path], None]:
    def fn(text: str) -> str:
        lines = text.splitlines()
        lines[line_no - 1] = new
        return "\n".join(lines) + "\n"
    return _edit(rel, fn)


def _append(rel: str, new: str) -> Callable[[Path], None]:
    return _edit(rel, lambda t: t + new + "\n")


def _remove(rel: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        p = work / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return setup


def _all(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        for s in setups:
            s(work)
    return setup


def RUN(*extra: str) -> Callable[[Path], list[str]]:
    """genir run on the work copy of the collection (bm25 only unless a method is named), --out work/out."""
    def args(work: Path) -> list[str]:
        base = ["run", "--dataset", str(work / "data"), "--out", str(work / "out")]
        if "--method" not in extra:
            base += ["--no-methods"]
        return base + [e.replace("{work}", str(work)) for e in extra]
    return args


def ARGS(*parts: str) -> Callable[[Path], list[str]]:
    return lambda work: [p.replace("{work}", str(work)) for p in parts]


C, Q, T = "data/corpus.jsonl", "data/queries.jsonl", "data/qrels/test.tsv"
M = "run/dsi-atomic"
TRAINED = ["--method", "dsi-atomic", "--no-baselines"]

CASES: list[Case] = [
    # -- corpus.jsonl --------------------------------------------------------------------------------
    Case("corpus: malformed JSON", "corpus", RUN(), "corpus.jsonl:2: malformed JSON", _line(C, 2, '{"_id": "d1",'),
         fast=True),
    Case("corpus: no _id", "corpus", RUN(), "corpus.jsonl:3: document has no '_id'", _line(C, 3, '{"text": "x"}')),
    Case("corpus: no text", "corpus", RUN(), "corpus.jsonl:1: document 'd0' has no 'text'",
         _line(C, 1, '{"_id": "d0", "title": "t"}')),
    Case("corpus: duplicate id", "corpus", RUN(), "corpus.jsonl:2: duplicate document id 'd0'",
         _line(C, 2, '{"_id": "d0", "text": "x"}')),
    Case("corpus: empty file", "corpus", RUN(), "corpus.jsonl: the corpus is empty", _edit(C, lambda t: "")),
    Case("corpus: every document empty", "corpus", RUN(), "corpus.jsonl: every document is empty",
         _edit(C, lambda t: "".join(json.dumps({"_id": f"d{i}", "text": ""}) + "\n" for i in range(24))), fast=True),
    Case("corpus: a list as title", "corpus", RUN(), "corpus.jsonl:1: document 'd0': 'title' must be a string",
         _line(C, 1, '{"_id": "d0", "title": ["a", "b"], "text": "x"}'), fast=True),
    Case("corpus: text is a number", "corpus", RUN(), "corpus.jsonl:1: document 'd0': 'text' must be a string",
         _line(C, 1, '{"_id": "d0", "text": 5}')),
    Case("corpus: id with a space", "corpus", RUN(), "corpus.jsonl:1: document id 'd 0' contains whitespace",
         _line(C, 1, '{"_id": "d 0", "text": "x"}'), fast=True),
    Case("corpus: _id is an object", "corpus", RUN(), "corpus.jsonl:1: document '_id' must be a string",
         _line(C, 1, '{"_id": {"a": 1}, "text": "x"}')),
    Case("corpus: a JSON list per line", "corpus", RUN(), "corpus.jsonl:1: expected a JSON object",
         _line(C, 1, '["d0", "x"]')),
    Case("corpus: UTF-16", "corpus", RUN(), "corpus.jsonl:1: the file is UTF-16",
         _bytes(C, lambda b: b.decode().encode("utf-16")), fast=True),
    Case("corpus: Latin-1", "corpus", RUN(), "corpus.jsonl:1: not UTF-8: byte 0xe9",
         _bytes(C, lambda b: b.replace(b"study 0", "caf\u00e9 0".encode("latin-1"), 1))),
    Case("corpus: binary", "corpus", RUN(), "corpus.jsonl:1: holds NUL bytes", _bytes(C, lambda b: bytes(range(256)))),
    Case("corpus: missing", "corpus", RUN(), "incomplete dataset folder: no corpus.jsonl", _remove(C)),
    # -- queries.jsonl -------------------------------------------------------------------------------
    Case("queries: malformed JSON", "queries", RUN(), "queries.jsonl:4: malformed JSON", _line(Q, 4, "{")),
    Case("queries: duplicate id", "queries", RUN(), "queries.jsonl:2: duplicate query id 'q0'",
         _line(Q, 2, '{"_id": "q0", "text": "x"}')),
    Case("queries: empty text", "queries", RUN(), "queries.jsonl:3: query 'q2' has an empty text",
         _line(Q, 3, '{"_id": "q2", "text": ""}'), fast=True),
    Case("queries: id with a tab", "queries", RUN(), "queries.jsonl:1: query id 'q\\t0' contains whitespace",
         _line(Q, 1, '{"_id": "q\\t0", "text": "x"}')),
    Case("queries: UTF-16", "queries", RUN(), "queries.jsonl:1: the file is UTF-16",
         _bytes(Q, lambda b: b.decode().encode("utf-16"))),
    Case("queries: Latin-1", "queries", RUN(), "queries.jsonl:2: not UTF-8",
         _line(Q, 2, '{"_id": "q1", "text": "PLACEHOLDER"}')),  # bytes swapped in by the setup below
    Case("queries: missing", "queries", RUN(), "incomplete dataset folder: no queries.jsonl", _remove(Q)),
    # -- qrels ---------------------------------------------------------------------------------------
    Case("qrels: grade 1.7", "qrels", RUN(), "test.tsv:2: grade '1.7' is not a finite integer",
         _line(T, 2, "q8\td8\t1.7"), fast=True),
    Case("qrels: grade inf", "qrels", RUN(), "test.tsv:2: grade 'inf' is not a finite integer",
         _line(T, 2, "q8\td8\tinf"), fast=True),
    Case("qrels: grade nan", "qrels", RUN(), "test.tsv:2: grade 'nan' is not a finite integer",
         _line(T, 2, "q8\td8\tnan")),
    Case("qrels: grade text", "qrels", RUN(), "test.tsv:3: grade 'high' is not a number", _line(T, 3, "q9\td9\thigh")),
    Case("qrels: unknown document", "qrels", RUN(), "test.tsv:2: corpus id 'nope' is not in corpus.jsonl",
         _line(T, 2, "q8\tnope\t1")),
    Case("qrels: unknown query", "qrels", RUN(), "test.tsv:2: query id 'q99' is not in queries.jsonl",
         _line(T, 2, "q99\td8\t1")),
    Case("qrels: two columns", "qrels", RUN(), "test.tsv:2: expected 3 tab-separated columns",
         _line(T, 2, "q8\td8")),
    Case("qrels: duplicate judgement", "qrels", RUN(), "test.tsv:3: duplicate judgement for ('q8', 'd16')",
         _line(T, 3, "q8\td16\t1")),
    Case("qrels: every grade 0", "qrels", RUN(), "test.tsv: no relevant judgement",
         _edit(T, lambda t: t.replace("\t1\n", "\t0\n")), fast=True),
    Case("qrels: header only", "qrels", RUN(), "test.tsv: no judgements",
         _edit(T, lambda t: "query-id\tcorpus-id\tscore\n"), fast=True),
    Case("qrels: id with a space (TREC columns)", "qrels", RUN(), "test.tsv:2: expected 3 tab-separated columns",
         _line(T, 2, "q8 0 d 8 1")),
    Case("qrels: UTF-16", "qrels", RUN(), "test.tsv:1: the file is UTF-16",
         _bytes(T, lambda b: b.decode().encode("utf-16"))),
    Case("qrels: binary", "qrels", RUN(), "test.tsv:1: holds NUL bytes", _bytes(T, lambda b: b"\x00\x01\x02garbage")),
    # -- settings (flags and --set) ------------------------------------------------------------------
    Case("--epochs -1", "settings", RUN("--epochs", "-1"), "training.epochs: must be greater than 0", fast=True),
    Case("--epochs 0", "settings", RUN("--epochs", "0"), "training.epochs: must be greater than 0"),
    Case("--lr nan", "settings", RUN("--lr", "nan"), "training.lr: expected a finite number", fast=True),
    Case("--beam 0", "settings", RUN("--beam", "0"), "search.beam: must be at least 1", fast=True),
    Case("--set search.k=0", "settings", RUN("--set", "search.k=0"), "search.k: must be at least 1"),
    Case("--holdout 1.5", "settings", RUN("--holdout", "1.5"), "data.holdout: must be less than 1", fast=True),
    Case("--max-test-queries -1", "settings", RUN("--max-test-queries", "-1"),
         "data.max_test_queries: must be at least 1"),
    Case("--set training.device=tpu", "settings", RUN("--set", "training.device=tpu"),
         "training.device: 'tpu' is not one of: auto, cpu, cuda", fast=True),
    Case("--batch-size 0", "settings", RUN("--batch-size", "0"), "training.batch_size: must be at least 1"),
    Case("--new-docs 2", "settings", RUN("--new-docs", "2"), "data.new_docs: must be less than 1"),
    Case("--semantic-c 1", "settings", RUN("--semantic-c", "1"), "dsi.semantic_c: must be at least 2"),
    Case("--set genret.codes=many", "settings", RUN("--set", "genret.codes=many"),
         "genret.codes: expected an integer, got 'many'"),
    Case("--set nosuch.key=1", "settings", RUN("--set", "nosuch.key=1"), "unknown settings group 'nosuch'"),
    Case("--set training.nosuch=1", "settings", RUN("--set", "training.nosuch=1"), "unknown setting training.nosuch"),
    Case("--set without =", "settings", RUN("--set", "training.epochs"), "expected GROUP.KEY=VALUE"),
    Case("--method nosuch", "settings", RUN("--method", "nosuch"), "unknown method 'nosuch'", fast=True),
    Case("--baseline nosuch", "settings", RUN("--baseline", "nosuch"), "unknown baseline 'nosuch'"),
    Case("--test-split nosuch", "settings", RUN("--test-split", "nosuch"), "has no qrels split 'nosuch'", fast=True),
    Case("--pseudo-queries missing file", "settings", RUN(*TRAINED, "--pseudo-queries", "{work}/nope.tsv"),
         "nope.tsv: file not found", fast=True),
    Case("--pseudo-queries unknown document", "settings", RUN(*TRAINED, "--pseudo-queries", "{work}/pq.tsv"),
         "pq.tsv:2: document id 'nope' is not in the corpus",
         lambda w: (w / "pq.tsv").write_text("d0\tsome query\nnope\tanother\n", encoding="utf-8")),
    Case("--out is a file", "settings", RUN(), "a file is there, not a run folder",
         lambda w: (w / "out").write_text("not a folder"), watched=[]),
    Case("--dataset missing folder", "settings", ARGS("run", "--dataset", "./nope", "--out", "{work}/out"),
         "nope: no such dataset folder"),
    Case("--data-dir lacks a file", "settings", ARGS("run", "--dataset", "data", "--data-dir", "{work}",
                                                      "--no-methods", "--out", "{work}/out"),
         "incomplete dataset folder: no queries.jsonl", _remove(Q), fast=True),
    Case("--teacher-scores missing", "settings",
         RUN("--method", "tied-atomic-distill", "--no-baselines", "--teacher-scores", "{work}/nope.tsv"),
         "nope.tsv: file not found"),
    Case("--teacher-scores infinite score", "settings",
         RUN("--method", "tied-atomic-distill", "--no-baselines", "--teacher-scores", "{work}/t.tsv"),
         "t.tsv:1: score 'inf' is not finite", lambda w: (w / "t.tsv").write_text("q0\td0\tinf\n")),
    Case("genret-nolearn without genret", "settings", RUN("--method", "genret-nolearn", "--no-baselines"),
         "genret-nolearn trains on GenRet's docids"),
    Case("docids --c with atomic docids", "settings",
         ARGS("docids", "--dataset", "{work}/data", "--scheme", "atomic", "--c", "8", "--out", "{work}/out"),
         "--scheme atomic reads neither", fast=True),
    Case("docids --c 1", "settings", ARGS("docids", "--dataset", "{work}/data", "--c", "1", "--out", "{work}/out"),
         "--c 1: a node needs at least 2 children", fast=True),
    Case("--redo a stage not run", "settings", RUN("--redo", "genret"), "--redo genret: not a stage of this run"),
    # -- config files --------------------------------------------------------------------------------
    Case("config: not found", "config", RUN("--config", "{work}/nope.yaml"), "nope.yaml: config file not found"),
    Case("config: bad YAML", "config", RUN("--config", "{work}/c.yaml"), "c.yaml: cannot parse config",
         lambda w: (w / "c.yaml").write_text("training: {epochs: [\n")),
    Case("config: epochs: many", "config", RUN("--config", "{work}/c.yaml"),
         "training.epochs: expected a number, got 'many'",
         lambda w: (w / "c.yaml").write_text("training: {epochs: many}\n"), fast=True),
    Case("config: methods: 5", "config", RUN("--config", "{work}/c.yaml"), "methods: expected a list of text",
         lambda w: (w / "c.yaml").write_text("methods: 5\n")),
    Case("config: a list", "config", RUN("--config", "{work}/c.yaml"), "the config must be a mapping",
         lambda w: (w / "c.yaml").write_text("- a\n- b\n")),
    Case("config: unknown top-level key", "config", RUN("--config", "{work}/c.yaml"), "unknown setting 'epochs'",
         lambda w: (w / "c.yaml").write_text("epochs: 3\n")),
    Case("config: UTF-16", "config", RUN("--config", "{work}/c.yaml"), "c.yaml: cannot parse config",
         lambda w: (w / "c.yaml").write_bytes("training: {epochs: 3}\n".encode("utf-16"))),
    # -- TREC run files (genir evaluate) -------------------------------------------------------------
    Case("run file: UTF-16", "run file", ARGS("evaluate", "{work}/r.trec", "--dataset", "{work}/data"),
         "r.trec:1: the file is UTF-16", lambda w: (w / "r.trec").write_bytes("q8 Q0 d8 1 2.0 x\n".encode("utf-16"))),
    Case("run file: random bytes", "run file", ARGS("evaluate", "{work}/r.trec", "--dataset", "{work}/data"),
         "r.trec:1:", lambda w: (w / "r.trec").write_bytes(os.urandom(300))),
    Case("run file: empty", "run file", ARGS("evaluate", "{work}/r.trec", "--dataset", "{work}/data"),
         "r.trec: the run file holds no result line", lambda w: (w / "r.trec").write_text(""), fast=True),
    Case("run file: queries all unknown", "run file", ARGS("evaluate", "{work}/r.trec", "--dataset", "{work}/data"),
         "none of its 1 queries is judged", lambda w: (w / "r.trec").write_text("zz Q0 d8 1 2.0 x\n"), fast=True),
    Case("run file: five columns", "run file", ARGS("evaluate", "{work}/r.trec", "--dataset", "{work}/data"),
         "r.trec:1: expected 6 columns", lambda w: (w / "r.trec").write_text("q8 Q0 d8 1 2.0\n")),
    Case("run file: score text", "run file", ARGS("evaluate", "{work}/r.trec", "--dataset", "{work}/data"),
         "r.trec:1: rank must be an integer and score a number",
         lambda w: (w / "r.trec").write_text("q8 Q0 d8 1 abc x\n")),
    Case("run file: score inf", "run file", ARGS("evaluate", "{work}/r.trec", "--dataset", "{work}/data"),
         "r.trec:1: score 'inf' is not finite", lambda w: (w / "r.trec").write_text("q8 Q0 d8 1 inf x\n")),
    Case("run file: missing", "run file", ARGS("evaluate", "{work}/nope.trec", "--dataset", "{work}/data"),
         "nope.trec: file not found"),
    # -- search / serve flags ------------------------------------------------------------------------
    Case("search --k -1", "search", ARGS("search", "{work}/" + M, "q", "--k", "-1"), "--k: must be at least 1",
         needs_run=True),
    Case("search --beam 0", "search", ARGS("search", "{work}/" + M, "q", "--beam", "0"), "--beam: must be at least 1",
         needs_run=True),
    Case("serve --port 70000", "search", ARGS("serve", "{work}/" + M, "--port", "70000"),
         "--port: must be between 0 and 65535", needs_run=True),
    Case("search --set bad value", "search", ARGS("search", "{work}/" + M, "q", "--set", "search.beam=-3"),
         "search.beam: must be at least 1", needs_run=True),
    # -- a trained run folder, damaged ---------------------------------------------------------------
    Case("folder: model.safetensors missing", "run folder", ARGS("search", "{work}/" + M, "q"),
         "model.safetensors: missing", _remove(M + "/model/model.safetensors"), needs_run=True),
    Case("folder: model.safetensors truncated", "run folder", ARGS("search", "{work}/" + M, "q"),
         "model.safetensors: not a readable safetensors file",
         _bytes(M + "/model/model.safetensors", lambda b: b[: len(b) // 2]), needs_run=True),
    Case("folder: model.safetensors empty", "run folder", ARGS("search", "{work}/" + M, "q"),
         "model.safetensors: not a readable safetensors file", _bytes(M + "/model/model.safetensors", lambda b: b""),
         needs_run=True),
    Case("folder: a pickle as model.safetensors", "run folder", ARGS("search", "{work}/" + M, "q"),
         "model.safetensors: not a readable safetensors file", needs_run=True,
         setup=lambda w: (w / M / "model" / "model.safetensors").write_bytes(pickle.dumps(Evil(str(w / "PWNED"))))),
    Case("folder: extra key in genir_model.json", "run folder", ARGS("search", "{work}/" + M, "q"),
         "genir_model.json: unknown setting 'surprise'",
         _edit(M + "/model/genir_model.json", lambda t: json.dumps({**json.loads(t), "surprise": 1})), needs_run=True),
    Case("folder: genir_model.json truncated", "run folder", ARGS("search", "{work}/" + M, "q"),
         "genir_model.json: not readable as JSON", _edit(M + "/model/genir_model.json", lambda t: t[:20]),
         needs_run=True),
    Case("folder: docids.json missing", "run folder", ARGS("search", "{work}/" + M, "q"),
         "docids.json: missing", _remove(M + "/docids/docids.json"), needs_run=True),
    Case("folder: docids/ missing", "run folder", ARGS("search", "{work}/" + M, "q"),
         "docids.json: missing: not a complete docid folder", _remove(M + "/docids"), needs_run=True),
    Case("folder: docids.tsv cut to 10 lines", "run folder", ARGS("search", "{work}/" + M, "q"),
         "docids.tsv: holds 10 documents; docids.json says 24",
         _edit(M + "/docids/docids.tsv", lambda t: "".join(t.splitlines(True)[:10])), needs_run=True),
    Case("folder: a code outside the vocabulary", "run folder", ARGS("search", "{work}/" + M, "q"),
         "docids.tsv:1: a code outside the vocabulary", _line(M + "/docids/docids.tsv", 1, "d0\t999"), needs_run=True),
    Case("folder: docids of another corpus", "run folder", ARGS("search", "{work}/" + M, "q"),
         "the documents of the docid table are not the ones", _line(M + "/docids/docids.tsv", 1, "zz\t0"),
         needs_run=True),
    Case("folder: no record and no config.json", "run folder", ARGS("search", "{work}/" + M, "q"),
         "not a trained genir folder (no retriever.json)", _all(_remove("run/config.json"),
                                                                 _remove(M + "/retriever.json")), needs_run=True),
    Case("folder: not a method folder", "run folder", ARGS("search", "{work}/run", "q"),
         "not a trained genir folder (no retriever.json)", needs_run=True),
    Case("transfer --from truncated config.json", "run folder",
         ARGS("transfer", "--from", "{work}/run", "--dataset", "{work}/data", "--out", "{work}/out"),
         "config.json: not readable as JSON", _edit("run/config.json", lambda t: t[:30]), needs_run=True),
    Case("transfer --from a missing folder", "run folder",
         ARGS("transfer", "--from", "{work}/nowhere", "--dataset", "{work}/data", "--out", "{work}/out"),
         "not a genir run folder (no config.json)"),
    # prepare() builds this one: a run folder whose only dsi-atomic checkpoint is a pickle
    Case("resume: a pickle as a checkpoint", "run folder", RUN(*TRAINED, "--epochs", "0.5", "--beam", "5"),
         "no checkpoint reads back", watched=[]),
    Case("resume: other settings in --out", "run folder",
         ARGS("run", "--dataset", "{work}/data", "--method", "dsi-atomic", "--no-baselines", "--epochs", "0.5",
              "--beam", "3", "--out", "{work}/run"),
         "search.beam = 5 there, 3 now", needs_run=True, watched=[]),
    # inputs that would make a result meaningless, and damaged values in a run folder (no traceback)
    Case("train on the evaluated split", "settings", RUN("--train-split", "test", *TRAINED),
         "data.train_split 'test' is the evaluated split", fast=True),
    Case("--holdout holds out no query", "settings", RUN("--holdout", "0.01"), "hold out a larger share", fast=True),
    Case("--out under a file", "settings", ARGS("run", "--dataset", "{work}/data", "--no-methods", "--out",
                                                "{work}/afile/out"),
         "afile/out", setup=_bytes("afile", lambda b: b"x"), fast=True, watched=[]),
    Case("docids --out names a file", "settings", ARGS("docids", "--dataset", "{work}/data", "--out", "{work}/afile"),
         "afile: a file is there", setup=_bytes("afile", lambda b: b"x"), fast=True, watched=[]),
    Case("qrels: a named pipe", "qrels", RUN(), "test.tsv: not a regular file",
         setup=_all(_remove(T), lambda work: os.mkfifo(work / T)), fast=True),
    Case("folder: n_codes 'fifty'", "run folder", ARGS("search", "{work}/" + M, "q"),
         "genir_model.json: n_codes: expected an integer, got 'fifty'",
         _edit(M + "/model/genir_model.json", lambda t: json.dumps({**json.loads(t), "n_codes": "fifty"})),
         needs_run=True),
    Case("folder: vocab_size 1e999", "run folder", ARGS("search", "{work}/" + M, "q"),
         "docids.json: vocab_size must be a positive integer",
         _edit(M + "/docids/docids.json", lambda t: t.replace('"vocab_size":', '"vocab_size": 1e999, "x":')),
         needs_run=True),
    Case("folder: meta 5", "run folder", ARGS("search", "{work}/" + M, "q"), "docids.json: meta must be dict",
         _edit(M + "/docids/docids.json", lambda t: json.dumps({**json.loads(t), "meta": 5})), needs_run=True),
    Case("folder: backbone config.json cut", "run folder", ARGS("search", "{work}/" + M, "q"),
         "backbone/config.json: not readable as JSON",
         _edit(M + "/model/backbone/config.json", lambda t: t[: len(t) // 2]), needs_run=True),
    Case("folder: NaN weights", "run folder", ARGS("search", "{work}/" + M, "q"), "NaN or infinite values",
         lambda work: _nan_weights(work / M / "model" / "model.safetensors"), needs_run=True),
    Case("index remove @binary file", "run folder", ARGS("index", "remove", "{work}/run", "@{work}/ids.bin"),
         "ids.bin:1: holds NUL bytes", _bytes("ids.bin", lambda b: bytes(range(256))), needs_run=True, watched=[]),
    Case("index add an empty file", "run folder", ARGS("index", "add", "{work}/run", "{work}/empty.jsonl"),
         "empty.jsonl: no documents in this file", _bytes("empty.jsonl", lambda b: b"\n"), needs_run=True,
         watched=[]),
    Case("corpus.jsonl is a folder", "corpus", RUN(), "corpus.jsonl: not a regular file",
         _all(_remove(C), lambda work: (work / C).mkdir()), fast=True),
    Case("corpus.jsonl a link loop", "corpus", RUN(), "corpus.jsonl: a symbolic link to nothing",
         _all(_remove(C), lambda work: os.symlink(work / C, work / C)), fast=True),
    Case("folder: tokenizer.json cut", "run folder", ARGS("search", "{work}/" + M, "q"),
         "tokenizer.json: not readable as JSON",
         _edit(M + "/model/backbone/tokenizer.json", lambda t: t[: len(t) // 2]), needs_run=True),
    Case("live: state.json cut", "run folder", ARGS("index", "status", "{work}/run"),
         "state.json: not readable as JSON",
         lambda work: ((work / "run" / "live").mkdir(exist_ok=True),
                       (work / "run" / "live" / "state.json").write_text('{"version": 1, "remo')),
         needs_run=True, watched=[]),
    Case("qrels: a corpus id in NFD, the corpus's in NFC", "qrels", RUN(), "the same id in Unicode NFC form",
         _all(_edit(C, lambda t: t + json.dumps({"_id": "caf\u00e9", "text": "coffee"}) + "\n"),
              _line(T, 2, "q8\tcafe\u0301\t1"))),
    Case("qrels: a query id in NFD, the queries' in NFC", "qrels", RUN(), "the same id in Unicode NFC form",
         _all(_edit(Q, lambda t: t + json.dumps({"_id": "r\u00e9q", "text": "coffee"}) + "\n"),
              _line(T, 2, "re\u0301q\td8\t1"))),
    Case("folder renamed to another method", "run folder",
         ARGS("run", "--dataset", "{work}/data", "--method", "dsi-naive", "--no-baselines", "--epochs", "0.5",
              "--beam", "5", "--out", "{work}/run"),
         "its record says it is dsi-atomic, not dsi-naive",
         lambda work: shutil.move(work / M, work / "run" / "dsi-naive"), needs_run=True, watched=[]),
    Case("transfer into its own source", "run folder",
         ARGS("transfer", "--from", "{work}/run", "--dataset", "{work}/data", "--out", "{work}/run"),
         "is the run transferred from", needs_run=True, watched=[]),
]


def _nan_weights(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    name = sorted(state)[-1]
    state[name] = state[name].clone().fill_(float("nan"))
    save_file(state, str(path))


def _queries_latin1(work: Path) -> None:
    p = work / Q
    p.write_bytes(p.read_bytes().replace(b"PLACEHOLDER", "caf\u00e9".encode("latin-1")))


def _patch_cases() -> None:
    for c in CASES:
        if c.name == "queries: Latin-1":
            c.setup = _all(c.setup, _queries_latin1)


_patch_cases()


# -- running ------------------------------------------------------------------------------------------
def train_run_folder(folder: Path, data: Path, genir: list[str]) -> None:
    """A small trained run folder (dsi-atomic) the run-folder cases damage copies of."""
    subprocess.run([*genir, "run", "--dataset", str(data), "--method", "dsi-atomic", "--no-baselines",
                    "--epochs", "0.5", "--beam", "5", "--out", str(folder)], check=True, capture_output=True)


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def prepare(case: Case, work: Path, data: Path, run_folder: Path | None) -> None:
    shutil.copytree(data, work / "data")
    if case.needs_run and run_folder is not None:
        shutil.copytree(run_folder, work / "run")
    if case.name == "resume: a pickle as a checkpoint" and run_folder is not None:
        # a real run folder whose dsi-atomic checkpoints are replaced by one pickle
        shutil.copytree(run_folder, work / "out")
        method = work / "out" / "dsi-atomic"
        for p in ("model", "result.json", "train.json", "dsi-atomic.trec"):
            q = method / p
            shutil.rmtree(q) if q.is_dir() else q.unlink(missing_ok=True)
        shutil.rmtree(method / "checkpoints", ignore_errors=True)
        ck = method / "checkpoints" / "step-00000001"
        ck.mkdir(parents=True)
        (ck / "state.safetensors").write_bytes(pickle.dumps(Evil(str(work / "PWNED"))))
        (ck / "meta.json").write_text("{}")
        cfg = json.loads((work / "out" / "config.json").read_text())
        stage = json.loads((method / "stage.json").read_text())
        stage["train"]["data.dataset"] = str(work / "data")
        (method / "stage.json").write_text(json.dumps(stage))
        cfg["data"]["dataset"] = str(work / "data")
        (work / "out" / "config.json").write_text(json.dumps(cfg))
        case.watched = []
        return
    case.setup(work)


def judge(case: Case, work: Path, code: int, output: str, before: dict[str, int]) -> tuple[bool, str]:
    """(passed, why not): exit 2, the expected text, no traceback, nothing written, no code executed."""
    problems = []
    if code != 2:
        problems.append(f"exit code {code}")
    if case.expect not in output:
        problems.append(f"message lacks {case.expect!r}")
    if "Traceback" in output:
        problems.append("traceback")
    for w in case.watched:
        if (work / w).exists():
            problems.append(f"left {w}/ behind")
    if (work / "PWNED").exists():
        problems.append("EXECUTED CODE FROM A PICKLE")
    if case.needs_run and (work / "run").exists() and snapshot(work / "run") != before:
        problems.append("changed the run folder")
    return not problems, "; ".join(problems)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, help="write the results as a markdown table here")
    ap.add_argument("-k", help="only cases whose name contains this")
    args = ap.parse_args()
    genir = [sys.executable, "-c", "from genir.cli import app; app()"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rows, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_collection(tmp / "data")
        run_folder = tmp / "trained"
        print("training the run folder the run-folder cases damage ...", flush=True)
        train_run_folder(run_folder, data, genir)
        for i, case in enumerate(c for c in CASES if not args.k or args.k in c.name):
            work = tmp / f"case{i}"
            work.mkdir()
            prepare(case, work, data, run_folder)
            before = snapshot(work / "run") if (work / "run").exists() else {}
            start = time.perf_counter()
            proc = subprocess.run([*genir, *case.args(work)], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=600)
            output = proc.stdout + proc.stderr
            ok, why = judge(case, work, proc.returncode, output, before)
            failed += not ok
            message = next((line for line in output.splitlines() if line.startswith("error:")), output.strip()[-200:])
            rows.append((case.kind, case.name, proc.returncode, "yes" if ok else f"NO: {why}",
                         message.replace(str(work), "").replace("|", "\\|")[:160], time.perf_counter() - start))
            print(f"{'ok ' if ok else 'BAD'} {case.kind:10s} {case.name:45s} {message.replace(str(work), '')[:110]}"
                  + ("" if ok else f"   <- {why}"), flush=True)
    print(f"\n{len(rows) - failed} of {len(rows)} malformed inputs refused as they should be")
    if args.table:
        lines = ["| kind | input | exit | as it should | message |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {n} | {c} | {ok} | `{m}` |" for k, n, c, ok, m, _ in rows]
        args.table.write_text("\n".join(lines) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
