"""What ``RUN/live/`` holds (the changes since training), read and written whole; the live index's errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genir.data.collection import Document, numbered_lines
from genir.docids import DocIdTable
from genir.io import PREVIOUS, atomic_path

LIVE = "live"


class LiveIndexError(ValueError):
    """A change the live index cannot make (the message says why and what to do)."""


@dataclass
class LiveState:
    """What ``RUN/live/`` holds: the changes since training."""

    added: list[Document] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)
    embeddings: np.ndarray | None = None  # dense embeddings of ``added`` (same order)
    tables: dict[str, DocIdTable] = field(default_factory=dict)  # method -> docids of added documents
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # method -> file -> rows of tables[m]
    version: int = 0

    @classmethod
    def read(cls, run_dir: Path) -> LiveState:
        folder = run_dir / LIVE
        if not folder.is_dir() and (run_dir / f"{LIVE}{PREVIOUS}").is_dir():  # a swap cut short: the state before
            folder = run_dir / f"{LIVE}{PREVIOUS}"
        if not (folder / "state.json").exists():
            return cls()
        from genir.data.collection import read_documents, read_json_object

        head = read_json_object(folder / "state.json")  # a damaged file is named, with what is wrong
        docs_file = folder / "documents.jsonl"
        added = read_documents(docs_file) if docs_file.is_file() and docs_file.read_bytes().strip() else []
        emb = np.load(folder / "embeddings.npy") if (folder / "embeddings.npy").exists() else None
        tables, arrays = {}, {}
        for name in head.get("methods", []):
            tables[name] = DocIdTable.load(folder / name / "docids")
            arrays[name] = {f: np.load(folder / name / f) for f in head.get("arrays", {}).get(name, [])}
        return cls(added, set(head.get("removed", [])), emb, tables, arrays, int(head.get("version", 0)))

    def write(self, run_dir: Path) -> None:
        """The whole state as a new folder, swapped in by rename (``genir.io.atomic_path``)."""
        with atomic_path(run_dir / LIVE) as tmp:
            tmp.mkdir(parents=True)
            with open(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
                for d in self.added:
                    f.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
            if self.embeddings is not None:
                np.save(tmp / "embeddings.npy", self.embeddings)
            for name, table in self.tables.items():
                table.save(tmp / name / "docids")
                for f, rows in self.arrays.get(name, {}).items():
                    np.save(tmp / name / f, rows)
            (tmp / "state.json").write_text(json.dumps({
                "version": self.version, "removed": sorted(self.removed), "methods": sorted(self.tables),
                "arrays": {m: sorted(a) for m, a in self.arrays.items() if a}}, indent=1), encoding="utf-8")


def read_removed_ids(values: list[str]) -> list[str]:
    """Ids given on the command line; ``@FILE`` reads one id per line."""
    out: list[str] = []
    for v in values:
        if v.startswith("@"):  # a file of ids: read as every genir file is (strict UTF-8, a regular file, named)
            out += [line.strip() for _, line in numbered_lines(Path(v[1:])) if line.strip()]
        else:
            out.append(v)
    return out
