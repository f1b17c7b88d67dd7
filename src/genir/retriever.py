"""A trained folder that opens itself: ``Retriever.load(folder).search(query, k)``.

Every folder a run writes for a system (a method's ``RUN/<method>/``, a baseline's ``RUN/baselines/<name>/``)
holds ``retriever.json``: what it is (a method and its recipe revision, or a baseline), the settings it was
trained and is searched with, its backbone, and the dataset it indexes (name, content hash, where it lay).
:meth:`Retriever.load` rebuilds the searcher from that record alone, exactly as the run measured it, so a
folder copied anywhere searches the same; it is the one loader behind ``genir run``, ``search``, ``serve``,
``transfer`` and the live index (after bm25s ``BM25.load(dir)``, Pyserini ``LuceneSearcher(index_dir)``).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genir.data.collection import DataError, Document, read_json_object
from genir.docids import DocIdTable
from genir.io import write_json
from genir.methods import BASELINES, check_search_read, get_method, open_searcher, settings_from
from genir.methods.base import Method
from genir.methods.baselines import with_precision
from genir.search.base import Hit, Results, Searcher
from genir.settings import COLLECTION_KEYS, Settings, SettingsError, settable_fields

RECORD = "retriever.json"
FORMAT = 1


def make_record(kind: str, name: str, settings: Settings, dataset: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What a trained folder is: ``kind`` "method" or "baseline", its name, the run's resolved settings and the
    dataset (name, sha256, path, documents) it indexes."""
    from genir import __version__

    revision = get_method(name).revision if kind == "method" else 1
    return {"format": FORMAT, "kind": kind, "name": name, "revision": revision, "genir": __version__,
            "backbone": settings.model.backbone, "dataset": dataset, "settings": settings.to_dict(), **extra}


def docids_digest(table: DocIdTable) -> str:
    """sha256 of a docid table's document ids in order: what the record keeps to tell its own table."""
    import hashlib

    return hashlib.sha256("\n".join(table.doc_ids).encode()).hexdigest()


def write_record(folder: str | Path, record: dict[str, Any]) -> None:
    write_json(Path(folder) / RECORD, record)


def read_record(folder: str | Path) -> dict[str, Any]:
    """The folder's record; a folder of a run made before records existed gets one from its run's
    ``config.json`` and its own name (the one way genir read such folders), and is refused when it has none."""
    folder = Path(folder)
    if not folder.is_dir():
        if (folder.parent / f"{folder.name}.json").is_file():  # a baseline row of a run made before saved indexes
            raise ValueError(f"{folder}: this run measured {folder.name} before genir saved baseline indexes; "
                             f"remake it with genir run --redo {folder.name} (same --out)")
        raise ValueError(f"{folder}: no such folder")
    path = folder / RECORD
    if not path.exists():
        config = folder.parent / "config.json"
        if (folder / "model").is_dir() and (folder / "docids").is_dir() and config.is_file():
            return {"format": 0, "kind": "method", "name": folder.name, "revision": None,
                    "settings": read_json_object(config), "dataset": None}
        raise ValueError(f"{folder}: not a trained genir folder (no {RECORD}); a method folder of a run made "
                         f"before folders recorded themselves needs its run's config.json beside it, and a "
                         f"baseline folder is remade by genir run --redo NAME")
    record = read_json_object(path)
    for key, kind in (("kind", str), ("name", str), ("settings", dict)):
        if not isinstance(record.get(key), kind):
            raise DataError(path, None, f"'{key}' missing or of the wrong type")
    if record.get("format", 0) > FORMAT:
        raise DataError(path, None, f"written by a newer genir (format {record['format']}); upgrade genir")
    return record


def record_settings(record: dict[str, Any], overrides: Mapping[str, Any] | None = None) -> Settings:
    return settings_from(record["settings"], f"{record.get('name')}: recorded settings", dict(overrides or {}))


# what a searcher opened from a folder reads of the search group: the beam search's and the encoders' settings;
# search.k is the caller's (search(query, k)), the hybrid rows are a run's, fused after its stages
_FOLDER_SEARCH_KEYS = {"beam", "batch_size", "encoder_precision", "decoder_precision", "prefix_beam"}


def searcher_reads(key: str, settings: Settings, method: Method | None, baseline: str | None = None) -> bool:
    """Whether a searcher opened from a folder reads the setting ``key``: the search group's beam-search and
    encoder settings, and the search-time keys of the method's own group (a baseline: only a dense one's
    query encoder precision)."""
    group, _, name = key.partition(".")
    if method is None:
        return baseline is not None and BASELINES[baseline].dense and key == "search.encoder_precision"
    if group == "search":  # a method without a beam-search decoder (Tied-Atomic) ranks all: no beam
        return name in _FOLDER_SEARCH_KEYS and (method.decodes or name not in ("beam", "prefix_beam"))
    fields = settable_fields(type(settings.group(group))) if group == method.group else {}
    return name in fields and bool(fields[name][0].metadata.get("search"))


def refuse_unread_overrides(overrides: Mapping[str, Any], settings: Settings, method: Method | None,
                            baseline: str | None = None) -> None:
    """A setting given to open a folder must be one its searcher reads (never accepted and ignored; see
    :func:`searcher_reads`). A SettingsError names the first that is not."""
    for key in overrides:
        if not searcher_reads(key, settings, method, baseline):
            what = method.name if method is not None else baseline
            raise SettingsError(f"{key}: {what}'s searcher does not read it (a folder opens with search settings "
                                "only: training and docid settings are the folder's own)")


def apply_search_overrides(settings: Settings, overrides: Mapping[str, Any], source: Settings | None = None) -> None:
    """Set, in a run's ``settings``, search settings that at least one of its searchers (methods and
    baselines) reads, as ``genir serve --set`` does; any other key (a training or docid setting, which a
    transfer cannot change) is refused with a SettingsError naming it, as are search settings that no
    searcher of the run reads together (:func:`genir.methods.check_search_read`). ``source``: the settings of
    the run a transfer's models come from; ``settings`` may differ from them only where a transfer reads its
    own (:func:`refuse_recipe_changes`)."""
    if source is not None:
        refuse_recipe_changes(settings, source)
    searchers = [(get_method(m), None) for m in settings.methods] + [(None, b) for b in settings.baselines]
    for key, value in overrides.items():
        if not any(searcher_reads(key, settings, method, baseline) for method, baseline in searchers):
            raise SettingsError(f"{key}: no searcher of this run reads it (methods: "
                                f"{', '.join(settings.methods) or 'none'}; baselines: "
                                f"{', '.join(settings.baselines) or 'none'}); only search settings apply here")
        settings.set(key, value)
    check_search_read(settings)


def refuse_recipe_changes(settings: Settings, source: Settings) -> None:
    """A transfer searches with models made as ``source`` records: a setting of ``settings`` other than the
    source's is refused (SettingsError) unless the transfer reads it: the target dataset and its queries, the
    search group, a runtime setting, a transferred method's search key, or the dense baselines' group when one
    runs (they are run anew on the target). Training, indexing-text and docid settings changed by hand would
    be recorded, not read (or, a document's leading span, read against what the model learned)."""
    from genir.methods import GROUPS
    dense_baseline = any(BASELINES[b].dense for b in settings.baselines)
    method_groups = {get_method(m).group for m in settings.methods}
    given_all, recorded_all = settings.resolved(), source.resolved()  # a budget left to follow another: its value
    for group, cls in GROUPS.items():
        if group == "search" or (group == "dense" and dense_baseline):
            continue
        for name, (spec, _) in settable_fields(cls).items():
            if f"{group}.{name}" in (*COLLECTION_KEYS, "data.data_dir"):  # the target collection
                continue
            given, recorded = getattr(given_all.group(group), name), getattr(recorded_all.group(group), name)
            read = spec.metadata.get("runtime") or (group in method_groups and spec.metadata.get("search"))
            if given != recorded and not read:
                raise SettingsError(f"{group}.{name}={given!r}: the transferred models were made with "
                                    f"{recorded!r}; a transfer keeps its source's training and docid settings "
                                    "(genir.methods.transfer_settings) and changes only search settings")


def corpus_of(record: dict[str, Any], settings: Settings) -> list[Document]:
    """The documents the folder indexes: the recorded dataset, found where it lay (its content checked),
    else by the run's dataset settings."""
    from genir.data import load_dataset

    data, recorded = settings.data, record.get("dataset") or {}
    path = recorded.get("path")
    source = path if path and Path(path).is_dir() else data.dataset
    coll = load_dataset(source, None if source == path else data.data_dir, data.qrels_dir)
    if recorded.get("sha256") and coll.content_hash != recorded["sha256"]:
        raise ValueError(f"{source}: not the dataset this folder indexes (content differs from the recorded "
                         f"{recorded.get('name')}); give its documents explicitly")
    return list(coll.corpus.values())


class Retriever:
    """A trained system opened from its folder: ``search(query, k)`` / ``batch_search(queries, k)``."""

    def __init__(self, folder: Path, record: dict[str, Any], searcher: Searcher, method: Method | None = None,
                 settings: Settings | None = None, model: Any = None, table: DocIdTable | None = None):
        self.folder, self.record, self.searcher = Path(folder), record, searcher
        self.method, self.settings, self.model, self.table = method, settings, model, table

    @property
    def name(self) -> str:
        return self.record["name"]

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.searcher.search(query, k)

    def batch_search(self, queries: Mapping[str, str] | list[str], k: int = 10) -> Results:
        if not isinstance(queries, Mapping):
            queries = {str(i): q for i, q in enumerate(queries)}
        return self.searcher.batch_search(queries, k)

    def save(self, folder: str | Path) -> Path:
        """A copy of the folder elsewhere, which opens itself there as here."""
        folder = Path(folder)
        if folder.exists():
            raise ValueError(f"{folder}: already exists")
        shutil.copytree(self.folder, folder, ignore=shutil.ignore_patterns("checkpoints", "*.tmp*"))
        if not (folder / RECORD).exists():  # a folder from before records: it gets its own now
            write_record(folder, {**self.record, "format": FORMAT, "revision": self.method.revision})
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, docs: list[Document] | None = None, beam: int | None = None,
             overrides: Mapping[str, Any] | None = None, device: str = "auto", model: Any = None,
             table: DocIdTable | None = None, doc_arrays: dict[str, Any] | None = None,
             show_progress: bool = False) -> Retriever:
        """Open a trained folder as its run searched it. ``docs``: the corpus for methods whose index is the
        model's encoding of it (default: the recorded dataset); ``overrides``: ``group.key`` -> value;
        ``model`` / ``table`` / ``doc_arrays``: parts already in memory (the run that trained them, a live
        index's changed docids). Raises ValueError (or DataError) naming what is wrong."""
        folder = Path(folder)
        record = read_record(folder)
        settings = record_settings(record, overrides)
        if beam is not None and (record["kind"] != "method" or not get_method(record["name"]).decodes):
            raise SettingsError(f"beam {beam}: {record['name']} ranks every document without a beam search")
        if record["kind"] == "baseline":
            if record["name"] not in BASELINES:
                raise ValueError(f"{folder}: unknown baseline {record['name']!r}")
            refuse_unread_overrides(overrides or {}, settings, None, record["name"])
            if docs is not None:  # a baseline's index is its folder's (BM25's matrix, dense's embeddings)
                raise ValueError(f"{folder}: a {record['name']} folder searches the documents it indexed; docs= is "
                                 "read by methods whose index is the model's encoding of a corpus (tied-atomic)")
            searcher = with_precision(BASELINES[record["name"]].load(folder), settings.search.encoder_precision)
            return cls(folder, record, searcher, settings=settings)
        if record["kind"] != "method":
            raise DataError(folder / RECORD, None, f"unknown kind {record['kind']!r}")
        method = get_method(record["name"])
        refuse_unread_overrides(overrides or {}, settings, method)
        if record.get("revision") not in (None, method.revision):
            raise ValueError(f"{folder}: made by revision {record['revision']} of {method.name}'s recipe; this "
                             f"genir trains revision {method.revision}: remake it with genir run --redo {method.name}")
        if model is None:
            from genir.workspace import resolve_device

            model_dir = folder / record.get("model", "model")
            model = method.model_class.load(model_dir).to(resolve_device(device))
        own_table = table is None  # a live index passes its changed table; the folder's own is checked
        if table is None:
            table = DocIdTable.load(folder / "docids")  # every line whole, codes in the vocabulary
        check_fits(method, folder, model, table)
        if own_table and record.get("docids") and record["docids"] != docids_digest(table):
            raise ValueError(f"{folder / 'docids'}: the documents of the docid table are not the ones this folder was "
                             "made with (docids.tsv changed?): remake it with genir run --redo " + method.name)
        if docs is None and method.needs_corpus:
            docs = corpus_of(record, settings)
        if docs is not None:
            absent = set(table.doc_ids) - {d.id for d in docs}
            if absent:
                raise ValueError(f"{folder / 'docids'}: {len(absent)} documents of the docid table are not in "
                                 f"the corpus (e.g. {sorted(absent)[0]!r}): the folder does not index this corpus")
        searcher = open_searcher(method, settings, model, table, folder, docs if method.needs_corpus else None,
                                 beam, show_progress=show_progress, doc_arrays=doc_arrays)
        return cls(folder, record, searcher, method, settings, model, table)


def check_fits(method: Method, folder: Path, model, table: DocIdTable) -> None:
    """The docid table and the model of one folder belong together."""
    if method.n_codes(table) > model.config.n_codes:
        raise ValueError(f"{folder}: the docids use {method.n_codes(table)} codes; the model decodes "
                         f"{model.config.n_codes}")
    if table.max_length > model.config.max_docid_length:
        raise ValueError(f"{folder}: the docids are {table.max_length} codes long; the model decodes at most "
                         f"{model.config.max_docid_length}")
