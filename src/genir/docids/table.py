"""DocIdTable: document -> tuple of integer codes in [0, vocab_size). Collisions are allowed and reported."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from genir.data.collection import DataError
from genir.io import write_text


class DocIdTable:
    """``codes[i]`` is the docid of ``doc_ids[i]``, right-padded with -1 where docids differ in length."""

    def __init__(self, doc_ids: list[str], codes: np.ndarray | list[list[int]], vocab_size: int,
                 scheme: str = "custom", meta: dict | None = None):
        if isinstance(codes, list):
            width = max((len(c) for c in codes), default=0)
            arr = np.full((len(codes), width), -1, dtype=np.int64)
            for i, c in enumerate(codes):
                arr[i, : len(c)] = c
            codes = arr
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] != len(doc_ids):
            raise ValueError(f"codes must be (n_docs, length); got {codes.shape} for {len(doc_ids)} documents")
        if len(doc_ids) and (codes[:, 0] < 0).any():
            raise ValueError("every docid needs at least one code")
        if codes.size and codes.max() >= vocab_size:
            raise ValueError(f"code {codes.max()} out of range for vocab_size {vocab_size}")
        self.doc_ids, self.codes, self.vocab_size = list(doc_ids), codes, int(vocab_size)
        self.scheme, self.meta = scheme, dict(meta or {})

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def max_length(self) -> int:
        return int(self.codes.shape[1])

    def lengths(self) -> np.ndarray:
        return (self.codes >= 0).sum(1)

    def sequence(self, i: int) -> tuple[int, ...]:
        row = self.codes[i]
        return tuple(int(c) for c in row[row >= 0])

    def sequences(self) -> list[tuple[int, ...]]:
        return [self.sequence(i) for i in range(len(self))]

    def groups(self) -> dict[tuple[int, ...], list[int]]:
        """docid -> indices of the documents that carry it (corpus order)."""
        out: dict[tuple[int, ...], list[int]] = {}
        for i, s in enumerate(self.sequences()):
            out.setdefault(s, []).append(i)
        return out

    def stats(self) -> dict:
        """Distinct docids, collision rate (share of documents whose docid another document also has)."""
        sizes = Counter(self.sequences()).values()
        colliding = sum(s for s in sizes if s > 1)
        return {
            "scheme": self.scheme, "documents": len(self), "distinct_docids": len(sizes),
            "collision_rate": colliding / max(len(self), 1), "largest_group": max(sizes, default=0),
            "vocab_size": self.vocab_size, "max_length": self.max_length,
            "mean_length": float(self.lengths().mean()) if len(self) else 0.0,
        }

    def code_frequencies(self, position: int = 0) -> np.ndarray:
        """How many documents carry each code at ``position`` (the docid-distribution plot)."""
        col = self.codes[:, position]
        return np.bincount(col[col >= 0], minlength=self.vocab_size)

    # Plain-folder persistence: a human-readable TSV plus a small JSON header.
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        rows = "".join(f"{d}\t{' '.join(map(str, self.sequence(i)))}\n" for i, d in enumerate(self.doc_ids))
        write_text(folder / "docids.tsv", rows)
        # the header last: a folder with docids.json is complete
        write_text(folder / "docids.json", json.dumps({"scheme": self.scheme, "vocab_size": self.vocab_size,
                                                       "documents": len(self), "meta": self.meta}, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> DocIdTable:
        """Read a docid folder; any damage (a missing or truncated file, a code outside the vocabulary, a
        repeated document) is a DataError naming the file and line."""
        from genir.data.collection import numbered_lines

        folder = Path(folder)
        head_path, path = folder / "docids.json", folder / "docids.tsv"
        for p in (head_path, path):
            if not p.is_file():
                raise DataError(p, None, "missing: not a complete docid folder")
        try:
            header = json.loads(head_path.read_text(encoding="utf-8"))
            vocab_size = header["vocab_size"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataError(head_path, None, f"not a docid header ({type(e).__name__}: {e})") from None
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise DataError(head_path, None, f"vocab_size must be a positive integer, got {vocab_size!r}")
        for key, kind in (("meta", dict), ("scheme", str), ("documents", int)):
            if header.get(key) is not None and not isinstance(header[key], kind):
                raise DataError(head_path, None, f"{key} must be {kind.__name__}, got {header[key]!r}")
        doc_ids, codes, seen = [], [], {}
        for line_no, line in numbered_lines(path):
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 2 or not cols[1].strip():
                raise DataError(path, line_no, "expected 'doc_id<TAB>code code ...'")
            try:
                row = [int(x) for x in cols[1].split()]
            except ValueError:
                raise DataError(path, line_no, "codes must be integers") from None
            if any(not 0 <= c < vocab_size for c in row):
                raise DataError(path, line_no, f"a code outside the vocabulary [0, {vocab_size})")
            if cols[0] in seen:
                raise DataError(path, line_no, f"document {cols[0]!r} again (first on line {seen[cols[0]]})")
            seen[cols[0]] = line_no
            codes.append(row)
            doc_ids.append(cols[0])
        expected = header.get("documents")
        if expected is not None and expected != len(doc_ids):
            raise DataError(path, None, f"holds {len(doc_ids)} documents; docids.json says {expected} "
                                        "(a truncated or edited table)")
        return cls(doc_ids, codes, vocab_size, header.get("scheme", "custom"), header.get("meta"))
