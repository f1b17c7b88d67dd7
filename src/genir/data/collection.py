"""A retrieval collection in the BEIR layout, loaded with validation.

Layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
``qrels/<split>.tsv`` (``query-id  corpus-id  score``, header optional). Grades are kept as integers;
a grade <= 0 is "judged not relevant" and kept so graded metrics see it.

Every problem raises :class:`DataError` naming the file, the line and what is wrong. Loading reads only:
nothing is written, so a failed load leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Bad input data: ``str(err)`` reads ``path:line: problem``."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""

    @property
    def full_text(self) -> str:
        """Title and text, the way BEIR baselines index a document."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


Qrels = dict[str, dict[str, int]]  # query id -> document id -> grade


def numbered_lines(path: str | Path):
    """Non-blank lines of a UTF-8 text file with their 1-based numbers, for ``file:line`` errors."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                yield line_no, line


@dataclass
class Collection:
    """Corpus, queries and qrels per split. Document order is the corpus file's order."""

    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, Qrels] = field(default_factory=dict)
    path: Path | None = None

    @property
    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries that have at least one relevant (grade > 0) judgement in ``split``."""
        qrels = self.qrels_for(split)
        return {qid: self.queries[qid] for qid in qrels if any(g > 0 for g in qrels[qid].values())}

    def qrels_for(self, split: str) -> Qrels:
        if split not in self.qrels:
            raise KeyError(f"{self.name} has no qrels split {split!r}; it has {sorted(self.qrels) or 'none'}")
        return self.qrels[split]

    def __repr__(self) -> str:
        splits = ", ".join(f"{s}: {len(q)} queries" for s, q in self.qrels.items())
        return f"Collection({self.name!r}, {len(self.corpus)} docs, {len(self.queries)} queries, {splits})"


def _read_jsonl(path: Path, kind: str, require_text: bool) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for line_no, line in numbered_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, line_no, f"malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(path, line_no, f"expected a JSON object, got {type(row).__name__}")
        if "_id" not in row:
            raise DataError(path, line_no, f"{kind} has no '_id' field")
        doc_id = str(row["_id"])
        if not doc_id:
            raise DataError(path, line_no, f"{kind} has an empty '_id'")
        if require_text and "text" not in row:
            raise DataError(path, line_no, f"{kind} {doc_id!r} has no 'text' field")
        text = row.get("text")
        if text is not None and not isinstance(text, str):
            raise DataError(path, line_no, f"{kind} {doc_id!r}: 'text' must be a string")
        if doc_id in rows:
            raise DataError(path, line_no, f"duplicate {kind} id {doc_id!r} (first seen on line "
                                           f"{rows[doc_id]['__line']})")
        row["__line"] = line_no
        rows[doc_id] = row
    return rows


def read_qrels(path: str | Path, corpus: dict | None = None, queries: dict | None = None) -> Qrels:
    """Read a qrels TSV (``qid  docid  grade`` or TREC ``qid 0 docid grade``), validating ids if given."""
    path = Path(path)
    qrels: Qrels = {}
    for line_no, line in numbered_lines(path):
        cols = line.rstrip("\n").split("\t") if "\t" in line else line.split()
        if line_no == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(cols) == 4:  # TREC qrels: qid iteration docid grade
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            raise DataError(path, line_no, f"expected 3 tab-separated columns "
                                           f"(query-id, corpus-id, score), got {len(cols)}")
        qid, did, grade_s = (c.strip() for c in cols)
        try:
            grade = int(float(grade_s))
        except ValueError:
            raise DataError(path, line_no, f"score {grade_s!r} is not a number") from None
        if queries is not None and qid not in queries:
            raise DataError(path, line_no, f"query id {qid!r} is not in queries.jsonl")
        if corpus is not None and did not in corpus:
            raise DataError(path, line_no, f"corpus id {did!r} is not in corpus.jsonl")
        if did in qrels.get(qid, {}):
            raise DataError(path, line_no, f"duplicate judgement for ({qid!r}, {did!r})")
        qrels.setdefault(qid, {})[did] = grade
    return qrels


def load_beir(path: str | Path, name: str | None = None, qrels_dir: str = "qrels") -> Collection:
    """Load a BEIR-layout folder. ``qrels_dir`` picks an alternative qrels folder (e.g. graded variants)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, None, "not a folder (expected corpus.jsonl, queries.jsonl, qrels/)")
    corpus_path, queries_path = path / "corpus.jsonl", path / "queries.jsonl"
    for p in (corpus_path, queries_path):
        if not p.is_file():
            raise DataError(p, None, "file is missing")
    corpus_rows = _read_jsonl(corpus_path, "document", require_text=True)
    if not corpus_rows:
        raise DataError(corpus_path, None, "the corpus is empty")
    corpus = {
        d: Document(d, r.get("text") or "", str(r.get("title") or "")) for d, r in corpus_rows.items()
    }
    queries = {q: r.get("text") or "" for q, r in _read_jsonl(queries_path, "query", True).items()}
    qrels: dict[str, Qrels] = {}
    qdir = path / qrels_dir
    if qdir.is_dir():
        for split_file in sorted(qdir.glob("*.tsv")):
            qrels[split_file.stem] = read_qrels(split_file, corpus, queries)
    return Collection(name or path.name, corpus, queries, qrels, path)
