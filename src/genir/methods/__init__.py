"""The method registry: every generative method genir runs, each family in one package here.

A family module declares ``METHODS`` (its :class:`~genir.methods.base.Method` recipes) and ``GROUPS`` (its
settings dataclasses); adding a method means adding one package and listing it in ``FAMILIES`` (see
``genir.methods.random_docids``, the example).
:func:`open_searcher` is the one searcher factory; :class:`genir.retriever.Retriever` opens a trained
folder through it with the settings the folder records, for ``genir run``, ``search``, ``serve``, ``transfer``
and the live index.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from genir.data.collection import Document
from genir.docids import DocIdTable
from genir.methods import dsi, genret, glen, merge, random_docids, tied
from genir.methods.base import Method, SearchRequest, Trained
from genir.methods.baselines import BASELINES
from genir.methods.ranking import RankSettings
from genir.search.base import Searcher
from genir.settings import SHARED_GROUPS, SearchSettings, Settings, SettingsError, group_to_dict

FAMILIES = [dsi, tied, genret, glen, merge, random_docids]  # a new method family: one package, one entry here
METHODS: dict[str, Method] = {m.name: m for family in FAMILIES for m in family.METHODS}
GROUPS: dict[str, type] = {**SHARED_GROUPS, "rank": RankSettings,
                           **{k: v for family in FAMILIES for k, v in family.GROUPS.items()}}

__all__ = ["BASELINES", "GROUPS", "METHODS", "Method", "SearchRequest", "Trained", "get_method", "make_settings",
           "open_searcher", "read_settings", "transfer_settings"]


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


def check_read(settings: Settings) -> None:
    """Settings that no stage of this run would read are refused, not accepted and ignored: a method's group
    set while no method of that group trains, the rank group
    without a method training with a ``rank_weight``, docids from the fine-tuned encoder without a method
    that builds docids from embeddings, short spans for pseudo-queries that are not DocAsQuery's."""
    values = settings.to_dict()
    used = {get_method(m).group for m in settings.methods}
    for group in sorted({m.group for m in METHODS.values() if m.group} - used):
        default = group_to_dict(type(settings.group(group))())
        changed = [k for k, v in values[group].items() if v != default.get(k)]
        if changed:
            readers = ", ".join(n for n, m in METHODS.items() if m.group == group)
            raise SettingsError(f"{group}.{changed[0]} is read only by {readers}; this run trains none of them "
                                f"(methods: {', '.join(settings.methods) or 'none'})")
    rank_users = [m for m in settings.methods if get_method(m).rank_weight(method_settings(settings, METHODS[m]))]
    if values["rank"] != group_to_dict(RankSettings()) and not rank_users:
        raise SettingsError("rank.* is read only by a method trained with a rank_weight (dsi.rank_weight, "
                            "merge.rank_weight, genret.rank_weight); none of this run's methods has one")
    for group, readers in (("dsi", ("dsi-semantic",)), ("merge", ("merge", "rqvae"))):
        if settings.group(group).docid_encoder == "trained" and not set(readers) & set(settings.methods):
            raise SettingsError(f"{group}.docid_encoder=trained is read only by {' and '.join(readers)}, "
                                "which this run does not train")
    check_search_read(settings)
    if settings.texts_set() and not settings.methods:
        raise SettingsError(f"{settings.texts_set()[0]}: indexing texts are read by the methods that train; this run "
                            "trains none")
    data, default = settings.data, SHARED_GROUPS["data"]()
    for key, is_set in (("short_spans", data.short_spans), ("random_spans", data.random_spans is not None)):
        if is_set and data.pseudo_queries != "docasquery":
            raise SettingsError(f"data.{key} shapes DocAsQuery's spans; with --pseudo-queries "
                                f"{data.pseudo_queries!r} no span is drawn")
    if data.doc2query_n != default.doc2query_n and not data.pseudo_queries.startswith("doc2query:"):
        raise SettingsError("data.doc2query_n is the count of --pseudo-queries doc2query:MODEL's queries; with "
                            f"{data.pseudo_queries!r} no query is generated")
    if data.keyword_terms != default.keyword_terms and settings.methods and not any(
            settings.for_texts(get_method(m).indexing_texts).data.keyword_queries for m in settings.methods):
        raise SettingsError("data.keyword_terms sizes the keyword queries, and no method of this run trains on "
                            "any (data.keyword_queries is 0 for each)")
    _refuse_unread_shared(settings)


def _refuse_unread_shared(settings: Settings) -> None:
    """The shared groups' settings that nothing of this run reads: with no method to train, the model and
    training groups and the data group's indexing texts, but for what a baseline trains with (``dense-trained``,
    ``Baseline.trains``) and the seed that draws held-out queries or new documents; the encoder's learning rate
    and warm-up with a frozen encoder; the dense group's encoder training without ``dense-trained`` or a method
    whose docids come from the fine-tuned encoder."""
    from genir.settings import COLLECTION_KEYS, settable_fields

    reads = {k for b in settings.baselines for k in BASELINES[b].trains}
    if settings.methods or any(BASELINES[b].dense for b in settings.baselines):
        reads.add("dense.model")  # the dense baselines' encoder, the methods' document embeddings and teacher
    if settings.data.holdout or settings.data.new_docs:
        reads.add("training.seed")
    tuned_docids = any(getattr(method_settings(settings, METHODS[m]), "docid_encoder", "") == "trained"
                       for m in settings.methods)
    frozen, training = settings.model.encoder == "frozen", SHARED_GROUPS["training"]()
    # a dense baseline that trains fine-tunes the dense encoder (the dense group's training settings)
    tuners = [b for b in BASELINES if BASELINES[b].dense and BASELINES[b].trains]
    tuned = f"the fine-tuned dense encoder ({', '.join(tuners)}, docid_encoder=trained)"

    def trained_by(key: str) -> list[str]:  # the baselines whose training reads ``key``
        return [b for b in BASELINES if key in BASELINES[b].trains]

    for name in ("encoder_lr", "encoder_warmup_ratio"):  # the encoder's own parameter group
        key = f"training.{name}"
        if (frozen and key not in reads and not (tuned_docids and name == "encoder_lr")
                and getattr(settings.training, name) != getattr(training, name)):
            raise SettingsError(f"{key} is read when the encoder is fine-tuned (--encoder full)"
                                + "".join(f" or by {b}" for b in trained_by(key)) + "; this run's encoder is frozen")
    groups = ([] if settings.methods else ["data", "model", "training"]) + (
        [] if any(b in tuners for b in settings.baselines) or tuned_docids else ["dense"])
    for group in groups:
        cls = SHARED_GROUPS[group]
        default = cls()
        for name, (spec, _) in settable_fields(cls).items():
            key = f"{group}.{name}"
            if (key in reads or key in COLLECTION_KEYS or key == "data.data_dir"
                    or spec.metadata.get("runtime") or getattr(settings.group(group), name) == getattr(default, name)):
                continue
            readers = ("the dense encoders (a dense baseline, a method's embeddings)" if key == "dense.model" else
                       tuned if group == "dense" else " and ".join(["the methods that train", *trained_by(key)]))
            raise SettingsError(f"{key} is read by {readers}; this run has none (methods: "
                                f"{', '.join(settings.methods) or 'none'}; baselines: "
                                f"{', '.join(settings.baselines) or 'none'})")


def check_search_read(settings: Settings) -> None:
    """The search group's settings that none of the run's searchers reads are refused (a run's, a transfer's):
    an encoder precision without an encoder, a beam other than the default without a method that beam-searches,
    a decoder setting without a beam-search decoder, and a prefix beam wider than the beam."""
    if settings.search.encoder_precision != "fp32" and not settings.methods and not any(
            BASELINES[b].dense for b in settings.baselines):
        raise SettingsError(f"search.encoder_precision={settings.search.encoder_precision} is read by the encoders "
                            "of search (generative methods, dense baselines); this run has none")
    not_decoding = [m for m in settings.methods if not METHODS[m].decodes]
    search, prefix_beam = settings.search, settings.search.prefix_beam
    if search.beam != SearchSettings().beam and len(not_decoding) == len(settings.methods):
        raise SettingsError(f"search.beam={search.beam} is the width of generative methods' beam searches; " + (
            f"{', '.join(not_decoding)} rank(s) every document without one" if not_decoding else "this run has none"))
    for key, is_set, reader in (("decoder_precision", search.decoder_precision != "fp32",
                                 "is read by the beam search decoders"),
                                ("prefix_beam", prefix_beam is not None, "narrows the beam searches")):
        if is_set and (not settings.methods or not_decoding):
            raise SettingsError(f"search.{key}={getattr(search, key)} {reader} of generative methods; " + (
                f"{', '.join(not_decoding)} search(es) without one" if not_decoding else "this run has none"))
    if prefix_beam is not None and prefix_beam > search.beam:
        raise SettingsError(f"search.prefix_beam={prefix_beam} is above search.beam={search.beam}: the "
                            "prefixes kept per step are at most the beam")


def method_settings(settings: Settings, method: Method) -> Any:
    return settings.group(method.group) if method.group else None


def open_searcher(method: Method, settings: Settings, model, table: DocIdTable | None, folder: Path,
                  docs: list[Document] | None = None, beam: int | None = None, show_progress: bool = False,
                  doc_arrays: dict[str, Any] | None = None) -> Searcher:
    """The searcher of a trained method, built the way its recipe searches, from the run's settings
    (``doc_arrays``: per-document arrays in ``table``'s row order, when a live index changed the table)."""
    if settings.search.encoder_precision != "fp32" and model is not None:
        from genir.models.precision import with_encoder_in

        model = with_encoder_in(model, settings.search.encoder_precision)
    req = SearchRequest(model=model, table=table, folder=Path(folder), settings=method_settings(settings, method),
                        search=settings.search, docs=docs, beam=beam,
                        show_progress=show_progress, doc_arrays=doc_arrays, seed=settings.training.seed)
    searcher = method.open_searcher(req)
    if settings.search.decoder_precision != "fp32":
        if not hasattr(searcher, "with_decoder"):
            raise SettingsError(f"search.decoder_precision={settings.search.decoder_precision} runs a beam search's "
                                f"decoder; {method.name} searches by {type(searcher).__name__}, which has none")
        searcher = searcher.with_decoder(settings.search.decoder_precision)
    if settings.search.prefix_beam is not None:
        if not hasattr(searcher, "with_prefix_beam"):
            raise SettingsError(f"search.prefix_beam={settings.search.prefix_beam} narrows a beam search; "
                                f"{method.name} searches by {type(searcher).__name__}, which has none")
        if settings.search.prefix_beam > searcher.beam:
            raise SettingsError(f"search.prefix_beam={settings.search.prefix_beam} is above the beam "
                                f"({searcher.beam}): the prefixes kept per step are at most the beam")
        searcher = searcher.with_prefix_beam(settings.search.prefix_beam)
    return searcher


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
    return settings_from(values, path)


def transfer_settings(source: str | Path, dataset: str, methods: list[str] | None = None,
                      baselines: list[str] | None = None, test_split: str = "test", data_dir: str | None = None,
                      qrels_dir: str | None = None, out: str | Path | None = None) -> Settings:
    """The settings of a zero-shot transfer (:func:`genir.pipeline.transfer`): the run folder ``source``'s,
    with ``dataset``'s test split as the data (nothing trained on it, no held-out or new documents), the
    methods trained there that can index a new corpus (or ``methods``), BM25 and dense (or ``baselines``)."""
    values = read_settings(source).to_dict()
    values["data"].update({"dataset": dataset, "data_dir": data_dir, "train_split": None, "test_split": test_split,
                           "qrels_dir": qrels_dir or "qrels", "holdout": 0.0, "new_docs": 0.0,
                           "max_test_queries": None})
    values["methods"] = list(methods or [m for m in values["methods"] if m in METHODS and METHODS[m].can_transfer])
    values["baselines"] = list(baselines) if baselines is not None else ["bm25", "dense"]
    # the source's search settings that none of the transferred systems reads go back to their defaults (its
    # beam, when only Tied-Atomic is transferred): what genir.pipeline.transfer then refuses is a caller's
    default = group_to_dict(SearchSettings())
    if not any(METHODS[m].decodes for m in values["methods"] if m in METHODS):
        values["search"].update({k: default[k] for k in ("beam", "decoder_precision", "prefix_beam")})
    if not values["methods"] and not any(BASELINES[b].dense for b in values["baselines"] if b in BASELINES):
        values["search"]["encoder_precision"] = default["encoder_precision"]
    values["out"] = str(out or f"runs/{Path(dataset).name}-from-{Path(source).name}")
    return make_settings(values)


def settings_from(values: dict[str, Any], where: str | Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Recorded settings (a run's ``config.json``, a folder's record) as Settings, then ``overrides``
    (``group.key`` -> value); a bad one is a ValueError naming ``where``."""
    values = {k: v for k, v in values.items() if k != "transferred_from"}
    for name, cls in GROUPS.items():  # a setting added since the record was made: as the folder was made
        recorded = values.get(name)
        if isinstance(recorded, dict):
            values[name] = {**{f.name: f.metadata["was"] for f in dataclasses.fields(cls) if "was" in f.metadata},
                            **recorded}
    try:
        settings = make_settings(values)
        for key, value in (overrides or {}).items():
            settings.set(key, value)
    except SettingsError as e:
        raise ValueError(f"{where}: {e}") from None
    return settings
