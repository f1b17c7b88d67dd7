"""Settings in groups: each group is a dataclass declared once with its defaults.

The shared groups live here (``data``, ``model``, ``training``, ``search``, ``dense``); each method family
declares its own group beside its recipe. A run's settings are one :class:`Settings` object: top-level
keys (``methods``, ``baselines``, ``out``) plus one attribute per group, read from nested YAML/JSON
(``training: {epochs: 5}``) and from ``--set group.key=value``, every value typed from its dataclass field.

Field metadata (``dataclasses.field(metadata=...)``), declared with the helpers below:
- ``choices``: the accepted values of a mode (:func:`choice`);
- ``gt`` / ``ge`` / ``lt`` / ``le``: the range of a number (:func:`positive`, :func:`at_least`, :func:`fraction`);
  every number is finite, and non-negative unless declared otherwise;
- ``derived``: not a setting of this group (filled in from another group by the code that uses it), so it
  is neither read nor written;
- ``added``: a setting added since run folders were made, whose default is how they were made: left out
  of the stage fingerprints while at its default (:func:`added`);
- ``reads``: a path whose file (or folder) a stage reads: its content is in the stage fingerprint;
- ``runtime``: changes how fast, not what comes out (the device, a search batch size), so a stage made
  with another value is still valid (left out of the stage fingerprints);
- ``search``: read only when searching (the beam, a tie-break): a trained model stays valid when it changes;
- ``flag``: the help of the setting's own ``genir run`` flag (``--KEY`` with dashes, or ``flag_name``); the
  command's flags are made from these (:func:`command_line_flags`), so a flag is a setting declared once;
- ``inherit`` / ``fallback`` / ``scale``: a training budget that follows another setting (:func:`inherited`):
  left unset (None), it takes that setting's value (x ``scale``) when that one is set, else its own default:
  how ``--epochs`` ... reach every training phase of every method (:meth:`Settings.resolved` fills them in);
- ``texts``: a count of query-free indexing texts (:func:`text_count`): left unset (None), it takes the value
  of the preset ``data.indexing_texts`` names, or at "method" the preset of the method that trains
  (:meth:`Settings.for_texts`); a preset is recorded in fingerprints by the values it stands for.

Every value is checked when it is read (a YAML file, a flag, ``--set``): a wrong one stops the run first.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from genir.settings_values import SettingsError, check_range, coerce  # noqa: F401 - part of this module's API


def choice(default: Any, *choices: Any, **meta: Any) -> Any:
    return field(default=default, metadata={"choices": choices, **meta})


def flag(default: Any, help: str, name: str | None = None, **meta: Any) -> Any:
    """A setting with a ``genir run`` flag of its own, ``--NAME`` (the key by default)."""
    metadata = {"flag": help, "flag_name": name, **meta}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def derived(default: Any) -> Any:
    return field(default=default, metadata={"derived": True})


def positive(default: Any, **meta: Any) -> Any:
    """A number > 0 (epochs, rates)."""
    return field(default=default, metadata={"gt": 0, **meta})


def at_least(default: Any, low: float, **meta: Any) -> Any:
    """A number >= ``low`` (counts: batch sizes, beams, lengths)."""
    return field(default=default, metadata={"ge": low, **meta})


def fraction(default: float, **meta: Any) -> Any:
    """A share in [0, 1)."""
    return field(default=default, metadata={"ge": 0, "lt": 1, **meta})


_UNSET = object()


def added(default: Any, was: Any = _UNSET, **meta: Any) -> Any:
    """A setting added after run folders existed: left out of the stage fingerprints while at the value those
    folders were made with (``was``; by default the default), so that they stay valid; a recorded run that
    lacks it reads it as ``was``. A default changed since (``was`` != ``default``) is in every fingerprint
    made at it, so no stage made the old way is taken for one made the new."""
    return field(default=default, metadata={"added": True, **({} if was is _UNSET else {"was": was}), **meta})


def inherited(default: Any, source: str | None = None, scale: float = 1.0, **meta: Any) -> Any:
    """A budget (epochs, a rate, a batch size) that follows ``source`` (``group.key``): unset (None), it is
    ``source``'s value x ``scale`` when ``source`` is set (or follows a set value itself), else ``default``."""
    return field(default=None, metadata={"inherit": source, "fallback": default, "scale": scale, **meta})


def text_count(default: Any, **meta: Any) -> Any:
    """An indexing-text setting (``texts``): unset (None), it follows the preset in force; ``default``, the
    light preset's value, is how run folders were made before presets (left out of fingerprints there)."""
    return field(default=None, metadata={"texts": True, "fallback": default, **meta})


# what the indexing-text presets stand for (data.indexing_texts). "all" won over "light" on SciFact's held-out
# training queries (--holdout 0.2) for DSI-atomic, DSI-semantic, GenRet and MERGE, by 0.04-0.14 nDCG@10
# (docs/experiments/effectiveness.md, "Indexing texts chosen on held-out queries" and after), and since for
# DSI-naive and GLEN (each method's preset: Method.indexing_texts)
INDEXING_TEXTS: dict[str, dict[str, Any]] = {
    "light": {"random_spans": 1, "sentence_queries": 0, "title_query": False, "keyword_queries": 0},
    "all": {"random_spans": 3, "sentence_queries": 3, "title_query": True, "keyword_queries": 2},
}


def runtime(default: Any, **meta: Any) -> Any:
    return field(default=default, metadata={"runtime": True, **meta})


# -- the shared groups ------------------------------------------------------------------------------
@dataclass
class DataSettings:
    dataset: str = flag("scifact", "dataset name (scifact, ...) or BEIR-layout folder")
    data_dir: str | None = flag(None, "folder holding datasets by name (checked first)")
    qrels_dir: str = flag("qrels", "qrels folder inside the dataset (graded variants)")
    train_split: str | None = flag("train", "qrels split used for training queries")
    test_split: str = flag("test", "qrels split evaluated", search=True)
    # tuning: train without this share of the training queries, evaluate on them (test untouched)
    holdout: float = fraction(0.0, flag="tune: train without this share of training queries, evaluate on them")
    # new documents: hold this share of the corpus out of all training; the report adds a "new-docs" subset
    new_docs: float = fraction(0.0, flag="hold this share of documents out of training: the 'new-docs' subset")
    max_test_queries: int | None = at_least(None, 1, search=True, flag="evaluate only the first N test queries")
    # BEIR's ignore_identical_ids, a query's own id dropped from its ranking; auto: where the query is that
    # document's text (ArguAna), not where numbered ids coincide (Cranfield); always: as BEIR does
    ignore_identical_ids: str = choice("auto", "auto", "always", "never", added=True, search=True)
    pseudo_queries: str = flag("docasquery", "docasquery | path to TSV/JSONL queries | doc2query:<model name or path>",
                               reads=True)
    span_words: int = at_least(64, 1)
    # a document's leading span, the text training reads for it, in words (0: span_words); search reads the
    # whole document up to model.doc_max_length tokens, so a span past that makes the two one text
    lead_words: int = added(0, ge=0)
    # the indexing texts every method of the run trains on: "method", each method's own preset (genir
    # methods); "light", the lead span and one random span; "all", 3 random spans, 3 sentences, the title and 2
    # keyword queries. A count set below is used whatever the preset (INDEXING_TEXTS)
    indexing_texts: str = choice("method", "method", "light", "all", preset=True, flag_name="texts",
                                 flag="indexing texts of every method: light, all, or method (each its own)")
    random_spans: int | None = text_count(1, ge=0)  # DocAsQuery's random spans per document
    short_spans: bool = added(False)  # short documents get spans too (half their words), none the leading text
    doc2query_n: int = at_least(5, 1)
    # query-free indexing texts added to the pseudo-queries: sentences, the title, BM25-keyword queries
    sentence_queries: int | None = text_count(0, ge=0, added=True)
    title_query: bool | None = text_count(False, added=True)
    keyword_queries: int | None = text_count(0, ge=0, added=True)
    keyword_terms: int = added(8, ge=1)


@dataclass
class ModelSettings:
    backbone: str = flag("minilm", "'minilm' (bundled) or any HF model name or path", reads=True)
    encoder: str = choice("frozen", "frozen", "full", flag="frozen (cached states) or full (fine-tune)")
    decoder_layers: int = at_least(2, 1)
    # decoder 2 x 256 wide, FFN 512: chosen on held-out SciFact training queries (--holdout 0.2) for
    # quality at beam 100 within half of dense search's speed (docs/experiments/decoder.md)
    decoder_dim: int | None = at_least(256, 1)
    decoder_ff: int | None = at_least(512, 1)
    doc_max_length: int = at_least(64, 1)
    query_max_length: int = at_least(64, 1)
    dropout: float = fraction(0.1)  # the decoder's (a pretrained backbone keeps its own)


@dataclass
class TrainingSettings:
    """The shared training loop's settings. ``epochs``, ``batch_size`` and ``lr`` set here (``--epochs``,
    ``--batch-size``, ``--lr``) reach every training phase of every method (``genir methods`` says how each
    phase takes them); unset, each phase keeps its own default (the retriever's: 30 epochs, 128, 1e-3)."""

    epochs: float | None = inherited(30, gt=0, flag="epochs of every training phase of every method ('genir "
                                     "methods' says how each takes it); unset: each phase's own default")
    batch_size: int | None = inherited(128, ge=1, flag="batch size of every training phase, likewise")
    lr: float | None = inherited(1e-3, gt=0, flag="learning rate of every training phase, likewise")  # decoder, heads
    encoder_lr: float = positive(5e-5)  # the pretrained encoder's own rate (--encoder full)
    # the encoder's linear warm-up, as a share of the steps (the decoder warms up over warmup_ratio); a
    # freshly initialised decoder sends large gradients into the pretrained encoder at first
    encoder_warmup_ratio: float = fraction(0.1)
    warmup_ratio: float = fraction(0.05)
    grad_accumulation: int = at_least(1, 1)  # micro-batches per optimiser step
    precision: str = choice("fp32", "fp32", "bf16", flag="bf16: autocast in training, where the device has it")
    gradient_checkpointing: bool = runtime(False)  # recompute encoder activations in backward: less memory
    seed: int = flag(0, "seed of every random choice (weights, batches, sampled texts)")
    device: str = choice("auto", "auto", "cpu", "cuda", runtime=True, flag="auto: cuda when available")
    checkpoint_every: int = at_least(200, 0, runtime=True)  # steps between checkpoints (and every epoch's end)
    weight_decay: float = added(0.01)  # AdamW's
    grad_clip: float = added(1.0, gt=0)  # the gradient's largest norm


@dataclass
class SearchSettings:
    beam: int = at_least(100, 1, search=True, flag="beam size for the reported search")
    k: int = at_least(100, 1, search=True)
    batch_size: int = at_least(16, 1, runtime=True)  # queries per beam-search batch
    # the encoders that run at search time (genir.models.precision): int8 by PyTorch's dynamic quantisation,
    # bf16 under torch.autocast
    encoder_precision: str = choice("fp32", "fp32", "int8", "bf16", added=True, search=True,
                                    flag="int8: search-time encoders' linear layers in int8 (CPU); "
                                         "bf16: under autocast in bfloat16")
    # bf16: the generative decoder's steps (beam search, tie ordering) under torch.autocast; the encoder as it is
    decoder_precision: str = choice("fp32", "fp32", "bf16", added=True, search=True,
                                    flag="bf16: beam search's decoder in bfloat16 (fast on CPUs with AMX/AVX512-BF16)")
    # the docid prefixes kept after a step, where they are not yet docids: the beam's last step then expands
    # these few prefixes' children into the `beam` docids (fewer decoder rows at the steps before it); unset:
    # `beam` at every step. A speed/ranking trade-off of the search, not a model's setting
    prefix_beam: int | None = at_least(None, 1, added=True, search=True,
                                       flag="unfinished docid prefixes kept per step (unset: --beam)")
    # hybrid rows, "a+b" pairs of this run's systems (e.g. tied-atomic+bm25), fused from their run files after
    # every stage (no stage of their own: they are computed anew each time, so they leave no fingerprint)
    hybrid: list[str] = field(default_factory=list, metadata={"runtime": True})
    hybrid_mode: str = choice("rrf", "rrf", "interpolate", runtime=True)
    hybrid_weight: float = field(default=0.5, metadata={"runtime": True})  # the first system's share


@dataclass
class DenseSettings:
    """The dense baselines: zero-shot (``dense``) and fine-tuned on the training queries (``dense-trained``)."""
    model: str | None = field(default=None, metadata={"reads": True})  # a name or path; None: the bundled MiniLM
    epochs: float = positive(1)
    batch_size: int = at_least(16, 2)  # in-batch negatives need two pairs
    train_max_length: int = at_least(128, 1)
    negative_depth: int = at_least(30, 1)  # BM25 negatives are sampled from its top-k


# the data settings that say which collection is read and which of its queries are evaluated (what a baseline
# reads of the group; ``data.data_dir``, where the collection lies, besides); the rest of the group says what
# training reads: the indexing texts and a document's leading span
COLLECTION_KEYS = ("data.dataset", "data.qrels_dir", "data.train_split", "data.test_split", "data.holdout",
                   "data.new_docs", "data.max_test_queries", "data.ignore_identical_ids")

SHARED_GROUPS: dict[str, type] = {"data": DataSettings, "model": ModelSettings, "training": TrainingSettings,
                                  "search": SearchSettings, "dense": DenseSettings}


def resolve_group(group: Any, lookup: Any = None) -> dict[str, Any]:
    """The values of ``group``'s unset inherited fields: from ``lookup(source) -> (value, set?)`` where a
    source is set, else their own defaults."""
    out = {}
    for f in dataclasses.fields(group):
        if "fallback" not in f.metadata or getattr(group, f.name) is not None:
            continue
        value, source_set = lookup(f.metadata["inherit"]) if lookup and f.metadata.get("inherit") else (None, False)
        out[f.name] = _scaled(value, f.metadata["scale"]) if source_set else f.metadata["fallback"]
    return out


def _scaled(value: Any, scale: float) -> Any:
    return value if scale == 1 else value * scale


# -- typing and reading values ----------------------------------------------------------------------
def settable_fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """name -> (field, resolved type) of a group's settings (``derived`` fields left out)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if not f.metadata.get("derived")}


def group_from_dict(cls: type, values: Mapping[str, Any], name: str) -> Any:
    if not isinstance(values, Mapping):
        raise SettingsError(f"{name}: expected a mapping of {name} settings, got {values!r}")
    known = settable_fields(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError(f"unknown setting {name}.{unknown[0]}; {name} settings: {', '.join(known)}")
    prefix = "" if cls is TopLevel else f"{name}."
    kwargs = {k: coerce(known[k][1], v, f"{prefix}{k}", known[k][0].metadata.get("choices", ()),
                        known[k][0].metadata) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:  # a group's own consistency checks (__post_init__)
        raise SettingsError(f"{name}: {e}") from None


def group_to_dict(group: Any) -> dict[str, Any]:
    out = {}
    for name in settable_fields(type(group)):
        v = getattr(group, name)
        out[name] = list(v) if isinstance(v, tuple) else v
    return out


@dataclass
class TopLevel:
    methods: list[str] = flag(["dsi-semantic", "dsi-atomic", "genret"], "a method; repeat the flag", "method")
    baselines: list[str] = flag(["bm25", "dense"], "a baseline; repeat the flag", "baseline")
    out: str | None = flag(None, "the run folder (a second run with it resumes)")


def command_line_flags(groups: Mapping[str, type]) -> dict[str, tuple[str, str, Any, str]]:
    """parameter name -> (settings key, ``--flag``, type, help) of every setting declared with a flag
    (:func:`flag`): the top-level keys', then each group's in order."""
    out = {}
    for group_name, cls in {"": TopLevel, **groups}.items():
        for name, (f, tp) in settable_fields(cls).items():
            if "flag" not in f.metadata:
                continue
            flag_name, choices = f.metadata.get("flag_name") or name, f.metadata.get("choices")
            out[flag_name.replace("-", "_")] = (
                f"{group_name}.{name}" if group_name else name, "--" + flag_name.replace("_", "-"), tp,
                f.metadata["flag"] + (f" (one of: {', '.join(map(str, choices))})" if choices else ""))
    return out


class Settings:
    """A run's settings: ``methods``, ``baselines``, ``out`` and one attribute per group.

    ``groups`` maps group name -> dataclass: the shared groups plus those the method registry declares.
    """

    def __init__(self, groups: Mapping[str, type], values: Mapping[str, Any] | None = None):
        self._groups = dict(groups)
        values = dict(values or {})
        top_fields = settable_fields(TopLevel)
        unknown = sorted(set(values) - set(top_fields) - set(self._groups))
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]!r}; top-level keys: {', '.join(top_fields)}; "
                                f"groups: {', '.join(self._groups)}")
        self._top = group_from_dict(TopLevel, {k: v for k, v in values.items() if k in top_fields}, "top level")
        for name, cls in self._groups.items():
            setattr(self, name, group_from_dict(cls, values.get(name) or {}, name))

    # top-level keys read and written like attributes
    methods = property(lambda s: s._top.methods, lambda s, v: setattr(s._top, "methods", v))
    baselines = property(lambda s: s._top.baselines, lambda s, v: setattr(s._top, "baselines", v))
    out = property(lambda s: s._top.out, lambda s, v: setattr(s._top, "out", v))

    def group(self, name: str) -> Any:
        return getattr(self, name)

    def lookup(self, key: str) -> tuple[Any, bool]:
        """(value, whether it was set: by hand, or by following a setting that was) of ``group.key``."""
        group_name, _, name = key.partition(".")
        group = self.group(group_name)
        f = {f.name: f for f in dataclasses.fields(group)}[name]
        value = getattr(group, name)
        if "fallback" not in f.metadata:
            return value, True
        if value is not None:
            return value, True
        source = f.metadata.get("inherit")
        if source:
            sv, source_set = self.lookup(source)
            if source_set:
                return _scaled(sv, f.metadata["scale"]), True
        return f.metadata["fallback"], False

    def resolved(self) -> Settings:
        """A copy with every inherited budget filled in: what each training phase will run with."""
        out = Settings(self._groups, self.to_dict())
        for name in self._groups:
            group = out.group(name)
            for f in dataclasses.fields(group):
                if "fallback" in f.metadata and not f.metadata.get("texts") and getattr(group, f.name) is None:
                    setattr(group, f.name, self.lookup(f"{name}.{f.name}")[0])
        return out

    def for_texts(self, method_preset: str = "light") -> Settings:
        """A copy whose unset indexing-text counts hold the values of ``data.indexing_texts``'s preset, or at
        "method" of ``method_preset`` (the preset of the method that trains): what that method trains on."""
        out = Settings(self._groups, self.to_dict())
        preset = self.data.indexing_texts if self.data.indexing_texts != "method" else method_preset
        for key, value in INDEXING_TEXTS[preset].items():
            if getattr(out.data, key) is None:
                setattr(out.data, key, value)
        return out

    def texts_set(self) -> list[str]:
        """The indexing-text settings given (the preset when not "method", and every count set)."""
        data = self.data
        return ([f"data.indexing_texts={data.indexing_texts}"] if data.indexing_texts != "method" else []) + [
            f"data.{k}={getattr(data, k)}" for k in INDEXING_TEXTS["light"] if getattr(data, k) is not None]

    def set(self, key: str, raw: Any) -> None:
        """``--set group.key=value`` (or a top-level ``methods=a,b``), typed from the declared field."""
        group_name, dot, name = key.partition(".")
        if not dot:
            top = settable_fields(TopLevel)
            if key not in top:
                raise SettingsError(f"unknown setting {key!r}: write GROUP.KEY (groups: {', '.join(self._groups)}) "
                                    f"or one of the top-level keys {', '.join(top)}")
            setattr(self._top, key, coerce(top[key][1], raw, key))
            return
        if group_name not in self._groups:
            raise SettingsError(f"unknown settings group {group_name!r} in {key}; groups: {', '.join(self._groups)}")
        group = self.group(group_name)
        values = group_to_dict(group)
        values[name] = raw
        setattr(self, group_name, group_from_dict(self._groups[group_name], values, group_name))

    def to_dict(self) -> dict[str, Any]:
        return {**group_to_dict(self._top), **{g: group_to_dict(self.group(g)) for g in self._groups}}

    def __repr__(self) -> str:
        return f"Settings({self.to_dict()!r})"
