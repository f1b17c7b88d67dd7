"""The method registry: every generative method genir runs, each family in one module of this package.

A family module declares ``METHODS`` (its :class:`~genir.methods.base.Method` recipes) and ``GROUPS`` (its
settings dataclasses); adding a method means adding one module and listing it in ``FAMILIES``.
:func:`open_searcher` is the one searcher factory: ``genir run`` measures a method with it, and ``genir
search``, ``serve`` and ``transfer`` open a method folder through it, with the settings the run recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genir.data.collection import Document
from genir.docids import DocIdTable
from genir.methods import dsi, genret, glen, merge, tied
from genir.methods.base import Method, SearchRequest, Trained
from genir.methods.baselines import BASELINES
from genir.search.base import Searcher
from genir.settings import SHARED_GROUPS, Settings, SettingsError

FAMILIES = [dsi, tied, genret, glen, merge]
METHODS: dict[str, Method] = {m.name: m for family in FAMILIES for m in family.METHODS}
GROUPS: dict[str, type] = {**SHARED_GROUPS, **{k: v for family in FAMILIES for k, v in family.GROUPS.items()}}

__all__ = ["BASELINES", "GROUPS", "METHODS", "Method", "SearchRequest", "Trained", "get_method", "make_settings",
           "open_method_folder", "open_searcher", "read_settings"]


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def make_settings(values: dict[str, Any] | None = None) -> Settings:
    """A run's settings over the shared and the methods' groups; method and baseline names are checked."""
    settings = Settings(GROUPS, values)
    check_names(settings)
    return settings


def check_names(settings: Settings) -> None:
    for m in settings.methods:
        if m not in METHODS:
            raise SettingsError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for b in settings.baselines:
        if b not in BASELINES:
            raise SettingsError(f"unknown baseline {b!r}; choose from {', '.join(BASELINES)}")


def method_settings(settings: Settings, method: Method) -> Any:
    return settings.group(method.group) if method.group else None


def open_searcher(method: Method, settings: Settings, model, table: DocIdTable | None, folder: Path,
                  docs: list[Document] | None = None, beam: int | None = None, show_progress: bool = False,
                  doc_arrays: dict[str, Any] | None = None) -> Searcher:
    """The searcher of a trained method, built the way its recipe searches, from the run's settings
    (``doc_arrays``: per-document arrays in ``table``'s row order, when a live index changed the table)."""
    req = SearchRequest(model=model, table=table, folder=Path(folder), settings=method_settings(settings, method),
                        search=settings.search, docs=docs, beam=beam,
                        show_progress=show_progress, doc_arrays=doc_arrays)
    return method.open_searcher(req)


def read_settings(run_dir: str | Path) -> Settings:
    """The settings a run folder was made with (its ``config.json``)."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise ValueError(f"{run_dir}: not a genir run folder (no config.json)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of settings")
    values.pop("transferred_from", None)
    try:
        return make_settings(values)
    except SettingsError as e:
        raise ValueError(f"{path}: {e}") from None


def open_method_folder(method_dir: str | Path, beam: int | None = None, docs: list[Document] | None = None,
                       overrides: dict[str, Any] | None = None) -> Searcher:
    """A method folder of a run (``model/`` + ``docids/``), searched exactly as the run's report measured it:
    the same method recipe and the run's recorded settings (``overrides``: ``group.key`` -> value). Methods
    whose index is the model's encodings of the corpus (tied docids) encode ``docs``, or else the run's
    dataset. Raises ValueError when the folder cannot be searched."""
    from genir.data import load_dataset
    from genir.data.collection import DataError

    method_dir = Path(method_dir)
    if not method_dir.is_dir():
        raise ValueError(f"{method_dir}: no such method folder")
    for part in ("model", "docids"):
        if not (method_dir / part).is_dir():
            raise ValueError(f"{method_dir}: not a trained method folder (no {part}/)")
    settings = read_settings(method_dir.parent)
    for key, value in (overrides or {}).items():
        settings.set(key, value)
    method = get_method(method_dir.name)
    from genir.workspace import resolve_device

    # strict: every weight present, of its shape; on a GPU when there is one (``training.device`` overrides)
    model = method.model_class.load(method_dir / "model").to(resolve_device(settings.training.device
                                                                       if "training.device" in (overrides or {})
                                                                       else "auto"))
    table = DocIdTable.load(method_dir / "docids")  # every line whole, codes in the vocabulary
    check_fits(method, method_dir, model, table)
    if docs is None:
        data = settings.data
        try:
            docs = list(load_dataset(data.dataset, data.data_dir, data.qrels_dir).corpus.values())
        except DataError:
            if method.needs_corpus:
                raise
    if docs is not None:
        absent = set(table.doc_ids) - {d.id for d in docs}
        if absent:
            raise ValueError(f"{method_dir / 'docids'}: {len(absent)} documents of the docid table are not in "
                             f"the corpus (e.g. {sorted(absent)[0]!r}): the folder does not belong to this dataset")
    return open_searcher(method, settings, model, table, method_dir, docs if method.needs_corpus else None, beam)


def check_fits(method: Method, method_dir: Path, model, table: DocIdTable) -> None:
    """The docid table and the model of one folder belong together."""
    if method.n_codes(table) > model.config.n_codes:
        raise ValueError(f"{method_dir}: the docids use {method.n_codes(table)} codes; the model decodes "
                         f"{model.config.n_codes}")
    if table.max_length > model.config.max_docid_length:
        raise ValueError(f"{method_dir}: the docids are {table.max_length} codes long; the model decodes at most "
                         f"{model.config.max_docid_length}")
