"""A retrieval collection in the BEIR layout, loaded with validation.

Layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
``qrels/<split>.tsv`` (``query-id  corpus-id  score``, header optional). Grades are kept as integers;
a grade <= 0 is "judged not relevant" and kept so graded metrics see it.

Every problem raises :class:`DataError` naming the file, the line and what is wrong. Loading reads only:
nothing is written, so a failed load leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    """Non-blank lines of a UTF-8 text file with their 1-based numbers, for ``file:line`` errors.

    Decoding is strict: a byte that is not UTF-8, a UTF-16 file or a binary one is a :class:`DataError`
    naming the line and the byte, never a silent replacement character (a UTF-8 byte-order mark is allowed)."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # a pipe or a device would block or never end
        raise DataError(path, None, "not a regular file")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a folder, expected a file") from None
    except OSError as e:
        raise DataError(path, None, f"cannot read ({e.strerror})") from None
    with f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise DataError(path, 1, "the file is UTF-16; save it as UTF-8")
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if b"\x00" in raw:
                raise DataError(path, line_no, "holds NUL bytes: a binary or UTF-16 file, not UTF-8 text")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, line_no, f"not UTF-8: byte 0x{raw[e.start]:02x} at column "
                                               f"{len(raw[: e.start].decode('utf-8', 'replace')) + 1}") from None
            if line.strip():
                yield line_no, line


def check_id(path: str | Path, line_no: int, kind: str, value: str) -> str:
    """An id as TREC files need it: non-empty, no whitespace (a space would split a run file's columns)."""
    if not value:
        raise DataError(path, line_no, f"{kind} id is empty")
    if any(c.isspace() for c in value):
        raise DataError(path, line_no, f"{kind} id {value!r} contains whitespace (TREC files split on it)")
    return value


def parse_grade(path: str | Path, line_no: int, text: str) -> int:
    """A relevance grade: a finite integer (``2`` or ``2.0``); ``1.7``, ``inf`` and ``nan`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, line_no, f"grade {text!r} is not a number") from None
    if not math.isfinite(value) or not value.is_integer():
        raise DataError(path, line_no, f"grade {text!r} is not a finite integer")
    return int(value)


@dataclass
class Collection:
    """Corpus, queries and qrels per split. Document order is the corpus file's order."""

    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, Qrels] = field(default_factory=dict)
    path: Path | None = None
    content_hash: str | None = None  # sha256 of the files read (see :func:`content_hash`)
    # split -> (query id, document id) of judgements naming documents not in the corpus: kept in the qrels
    # (they count against recall and nDCG, as BEIR evaluates them), never trained on
    missing_judged: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

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


def jsonl_objects(path: str | Path):
    """(line number, JSON object) for every non-blank line of a JSONL file; any other line is a DataError."""
    for line_no, line in numbered_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, line_no, f"malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(path, line_no, f"expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def _read_jsonl(path: Path, kind: str, require_text: bool) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for line_no, row in jsonl_objects(path):
        if "_id" not in row:
            raise DataError(path, line_no, f"{kind} has no '_id' field")
        if not isinstance(row["_id"], (str, int)) or isinstance(row["_id"], bool):
            raise DataError(path, line_no, f"{kind} '_id' must be a string, got {type(row['_id']).__name__}")
        doc_id = check_id(path, line_no, kind, str(row["_id"]))
        if require_text and "text" not in row:
            raise DataError(path, line_no, f"{kind} {doc_id!r} has no 'text' field")
        for key in ("text", "title"):
            value = row.get(key)
            if value is not None and not isinstance(value, str):
                raise DataError(path, line_no, f"{kind} {doc_id!r}: {key!r} must be a string, "
                                               f"got {type(value).__name__}")
        if doc_id in rows:
            raise DataError(path, line_no, f"duplicate {kind} id {doc_id!r} (first seen on line "
                                           f"{rows[doc_id]['__line']})")
        row["__line"] = line_no
        rows[doc_id] = row
    return rows


def read_documents(path: str | Path) -> list[Document]:
    """Documents of a BEIR-style JSONL file (``_id``, ``text``, optional ``title``), in file order; a bad line
    is a DataError naming it; an empty text is one too (nothing to index)."""
    out = []
    for doc_id, row in _read_jsonl(Path(path), "document", True).items():
        if not (row.get("text") or "").strip() and not (row.get("title") or "").strip():
            raise DataError(path, row["__line"], f"document {doc_id!r} has an empty text")
        out.append(Document(doc_id, row.get("text") or "", row.get("title") or ""))
    if not out:
        raise DataError(path, None, "no documents in this file")
    return out


def read_qrels(path: str | Path, corpus: dict | None = None, queries: dict | None = None,
               missing: list[tuple[int, str, str]] | None = None) -> Qrels:
    """Read a qrels TSV (``qid  docid  grade`` or TREC ``qid 0 docid grade``), validating ids if given.
    With ``missing`` (a list), a judgement of a document not in ``corpus`` is kept and listed there as
    (line, query id, document id) instead of refused: real BEIR releases have a few (ArguAna: 5)."""
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
        check_id(path, line_no, "query", qid)
        check_id(path, line_no, "corpus", did)
        grade = parse_grade(path, line_no, grade_s)
        if queries is not None and qid not in queries:
            raise DataError(path, line_no, f"query id {qid!r} is not in queries.jsonl{nfc_hint(qid, queries)}")
        if corpus is not None and did not in corpus:
            if missing is None:
                raise DataError(path, line_no, f"corpus id {did!r} is not in corpus.jsonl{nfc_hint(did, corpus)}")
            missing.append((line_no, qid, did))
        if did in qrels.get(qid, {}):
            raise DataError(path, line_no, f"duplicate judgement for ({qid!r}, {did!r})")
        qrels.setdefault(qid, {})[did] = grade
    if not qrels:
        raise DataError(path, None, "no judgements (the file is empty or holds only a header)")
    if not any(g > 0 for rels in qrels.values() for g in rels.values()):
        raise DataError(path, None, "no relevant judgement (every grade is <= 0): nothing to evaluate or train on")
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
    if not any(doc.full_text.strip() for doc in corpus.values()):
        raise DataError(corpus_path, None, "every document is empty (no title and no text)")
    query_rows = _read_jsonl(queries_path, "query", True)
    for q, r in query_rows.items():
        if not (r.get("text") or "").strip():
            raise DataError(queries_path, r["__line"], f"query {q!r} has an empty text")
    queries = {q: r["text"] for q, r in query_rows.items()}
    qrels: dict[str, Qrels] = {}
    missing_judged: dict[str, list[tuple[str, str]]] = {}
    qdir = path / qrels_dir
    if qdir.is_dir():
        for split_file in sorted(qdir.glob("*.tsv")):
            missing: list[tuple[int, str, str]] = []
            qrels[split_file.stem] = read_qrels(split_file, corpus, queries, missing)
            judged = sum(len(r) for r in qrels[split_file.stem].values())
            if len(missing) > MISSING_JUDGED_SHARE * judged:  # not a quirk: the files do not match
                line, _, did = missing[0]
                raise DataError(split_file, line, f"corpus id {did!r} is not in corpus.jsonl{nfc_hint(did, corpus)} "
                                f"({len(missing)} of {judged} judgements name documents not in the corpus; a few are "
                                f"kept and counted, as BEIR evaluates them, but this many mean the files do not match)")
            if missing:
                missing_judged[split_file.stem] = [(q, d) for _, q, d in missing]
    files = [corpus_path, queries_path, *(sorted(qdir.glob("*.tsv")) if qdir.is_dir() else [])]
    return Collection(name or path.name, corpus, queries, qrels, path.resolve(), content_hash(path, files),
                      missing_judged)


# judgements of documents absent from the corpus kept (and reported) up to this share of a qrels file: BEIR's
# ArguAna has 5 of 1,406; more than 1% is a mismatch of files (a wrong corpus, ids changed), refused
MISSING_JUDGED_SHARE = 0.01


def nfc_hint(doc_id: str, known: dict) -> str:
    """Where an id differs from one of ``known`` only in its Unicode form (NFD vs NFC), say so."""
    import unicodedata

    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, doc_id)
        if other != doc_id and other in known:
            return (f" (the file it names has {other!r}, the same id in Unicode {form} form: "
                    "write both files in one form)")
    return ""


def content_hash(root: Path, files: list[Path]) -> str:
    """sha256 over the names (relative to ``root``) and bytes of the files a collection was read from: two
    folders with the same hash hold the same collection, whatever their place."""
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON object from a regular file; anything else is a DataError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "missing" if not path.exists() else "not a regular file")
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, None, f"not readable as JSON ({e})") from None
    if not isinstance(value, dict):
        raise DataError(path, None, "expected a JSON object")
    return value
