"""The Amazon Shopping Queries dataset (ESCI; Reddy et al. 2022), MERGE's benchmark, as a graded Collection.

A folder holding the release's two tables, ``shopping_queries_dataset_examples`` and
``shopping_queries_dataset_products`` (``.parquet`` as released, which needs ``pyarrow``; or ``.csv``,
``.tsv``, ``.jsonl`` with the same columns):

- examples: ``query_id, query, product_id, product_locale, esci_label, split`` (+ ``small_version``,
  ``large_version``); labels E / S / C / I become grades 3 / 2 / 1 / 0 (I = judged not relevant);
  ``split`` (train / test) names the qrels split.
- products: ``product_id, product_title, product_description, product_bullet_point, product_brand,
  product_color, product_locale``; the title is the document's title, description, bullet points, brand
  and colour its text.

Only products judged for a kept query enter the corpus. Errors name the file, the row and the problem.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from genir.data.collection import Collection, DataError, Document, Qrels, content_hash, jsonl_objects

ESCI_GRADES = {"E": 3, "S": 2, "C": 1, "I": 0}
EXAMPLES, PRODUCTS = "shopping_queries_dataset_examples", "shopping_queries_dataset_products"
_SUFFIXES = (".parquet", ".jsonl", ".csv", ".tsv")


def find_table(folder: Path, stem: str) -> Path | None:
    for suffix in _SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def is_esci_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and find_table(folder, EXAMPLES) is not None


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(row number as a reader would count it: the file line for text formats, 1-based row for parquet, row)."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(path, None, "reading parquet needs pyarrow (pip install pyarrow), or convert the "
                                        "table to .csv / .jsonl") from None
        yield from enumerate(pq.read_table(path).to_pylist(), 1)
    elif path.suffix == ".jsonl":
        yield from jsonl_objects(path)
    else:
        with open(path, encoding="utf-8", errors="strict", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            try:
                yield from ((reader.line_num, row) for row in reader)
            except UnicodeDecodeError as e:
                raise DataError(path, reader.line_num + 1, f"not UTF-8 (byte 0x{e.object[e.start]:02x})") from None


def _need(path: Path, line: int, row: dict, column: str) -> str:
    value = row.get(column)
    if value is None or str(value).strip() == "":
        raise DataError(path, line, f"missing {column!r}")
    return str(value).strip()


def load_esci(folder: str | Path, locale: str = "us", version: str | None = "small",
              name: str | None = None) -> Collection:
    """ESCI as a Collection: graded qrels per ``split``, rows of ``locale`` only, and of the ``version``
    (``small`` = the task-1 subset MERGE uses; ``large``; None = every row)."""
    folder = Path(folder)
    examples, products = find_table(folder, EXAMPLES), find_table(folder, PRODUCTS)
    if examples is None or products is None:
        missing = EXAMPLES if examples is None else PRODUCTS
        raise DataError(folder, None, f"no {missing}{{{','.join(_SUFFIXES)}}} here")
    queries: dict[str, str] = {}
    qrels: dict[str, Qrels] = {}
    for line, row in _rows(examples):
        if locale and str(row.get("product_locale", locale)) != locale:
            continue
        if version and str(row.get(f"{version}_version", 1)).strip() not in ("1", "1.0", "True", "true"):
            continue
        qid, query = _need(examples, line, row, "query_id"), _need(examples, line, row, "query")
        pid, label = _need(examples, line, row, "product_id"), _need(examples, line, row, "esci_label")
        if label not in ESCI_GRADES:
            raise DataError(examples, line, f"esci_label {label!r} is not one of E, S, C, I")
        split = _need(examples, line, row, "split")
        if queries.setdefault(qid, query) != query:
            raise DataError(examples, line, f"query id {qid!r} has two texts")
        judged = qrels.setdefault(split, {}).setdefault(qid, {})
        if pid in judged:
            raise DataError(examples, line, f"duplicate judgement for ({qid!r}, {pid!r})")
        judged[pid] = ESCI_GRADES[label]
    if not queries:
        kept = f"locale {locale!r}" + (f", version {version!r}" if version else "")
        raise DataError(examples, None, f"no rows for {kept}")
    wanted = {pid for split in qrels.values() for rels in split.values() for pid in rels}
    corpus: dict[str, Document] = {}
    for line, row in _rows(products):
        pid = str(row.get("product_id") or "").strip()
        if pid not in wanted or pid in corpus:
            continue
        if locale and str(row.get("product_locale", locale)) != locale:
            continue
        title = str(row.get("product_title") or "").strip()
        body = " ".join(str(row.get(c) or "").strip() for c in
                        ("product_description", "product_bullet_point", "product_brand", "product_color"))
        if not title and not body.strip():
            raise DataError(products, line, f"product {pid!r} has neither title nor text")
        corpus[pid] = Document(pid, " ".join(body.split()), title)
    absent = wanted - set(corpus)
    if absent:
        raise DataError(products, None, f"{len(absent)} judged products have no row here, e.g. {sorted(absent)[0]!r}")
    return Collection(name or f"esci-{locale}", corpus, queries, qrels, folder.resolve(),
                      content_hash(folder, [examples, products]))
