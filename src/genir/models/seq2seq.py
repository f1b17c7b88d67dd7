"""DocidSeq2Seq: encoder -> decoder -> code head. The generative retriever every docid method trains.

Backbones (``ModelConfig.backbone``):
- ``"minilm"`` (default, offline): the bundled pretrained all-MiniLM-L6-v2 encoder with a small transformer
  decoder (:class:`CodeDecoder`). MiniLM has no LM head, so decoder and cross-attention start random.
- any HF encoder-decoder by name or path (``t5-base``): its encoder and decoder stacks, with code
  embeddings and a code head of their own (the 30k-word LM head is never evaluated in beam search).
- any HF encoder-only model by name or path: its encoder with a :class:`CodeDecoder`.

The output layer covers only docid codes (+ end-of-docid). Saves and loads as a plain folder:
``genir_model.json`` + ``model.safetensors`` + ``backbone/`` (HF config and tokenizer).
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import entry_points
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genir.data.collection import DataError
from genir.io import atomic_path
from genir.models.decoder import CodeDecoder
from genir.models.hf_decoder import HFDecoder
from genir.models.pretrained import bundled_minilm_path
from genir.settings_values import SettingsError, coerce


@dataclass
class ModelConfig:
    n_codes: int  # docid code vocabulary (the end-of-docid code is n_codes, the start code n_codes + 1)
    backbone: str = "minilm"
    decoder_layers: int = 2
    decoder_heads: int | None = None  # default: the encoder's number of heads
    decoder_ff: int | None = None  # default: 4 x the decoder's width
    decoder_dim: int | None = None  # default: the encoder's width (the decoder projects encoder states)
    max_docid_length: int = 32
    dropout: float = 0.1
    query_max_length: int = 64
    doc_max_length: int = 64
    extra: dict = field(default_factory=dict)  # method-specific settings, saved with the model


# architecture name (ModelConfig.extra["architecture"]) -> model class; subclasses register themselves
ARCHITECTURES: dict[str, type[DocidSeq2Seq]] = {}
# where a package declares its architectures (pyproject's entry points), so that a folder saved by one loads
# before anything has imported its class; this layer names no method
ARCHITECTURE_ENTRY_POINTS = "genir.architectures"


def find_architecture(name: str) -> type[DocidSeq2Seq] | None:
    """The class registered under ``name``, importing the package that declares it if none has yet."""
    if name not in ARCHITECTURES:
        for point in entry_points(group=ARCHITECTURE_ENTRY_POINTS, name=name):
            ARCHITECTURES.setdefault(name, point.load())
    return ARCHITECTURES.get(name)


def register_architecture(name: str):
    def register(cls: type[DocidSeq2Seq]) -> type[DocidSeq2Seq]:
        ARCHITECTURES[name] = cls
        return cls

    return register


class DocidSeq2Seq(nn.Module):
    def __init__(self, config: ModelConfig, _hf_dir: str | None = None, _from_config: bool = False):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

        self.config = config
        source = _hf_dir or (bundled_minilm_path() if config.backbone == "minilm" else config.backbone)
        hf_config = AutoConfig.from_pretrained(source)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.is_encoder_decoder = bool(getattr(hf_config, "is_encoder_decoder", False))
        if self.is_encoder_decoder:
            hf = (AutoModelForSeq2SeqLM.from_config(hf_config) if _from_config
                  else AutoModelForSeq2SeqLM.from_pretrained(source))
            d = hf_config.d_model
            self.encoder = hf.get_encoder()
            self.decoder = HFDecoder(hf.get_decoder(), d)
        else:
            self.encoder = AutoModel.from_config(hf_config) if _from_config else AutoModel.from_pretrained(source)
            d_enc = hf_config.hidden_size
            d = config.decoder_dim or d_enc
            heads = config.decoder_heads or (getattr(hf_config, "num_attention_heads", 8) if d == d_enc
                                             else max(1, d // 64))
            self.decoder = CodeDecoder(d, config.decoder_layers, heads, config.decoder_ff or 4 * d, d_enc,
                                       config.max_docid_length + 1, config.dropout)
        self.hf_config, self.d_model = hf_config, (hf_config.d_model if self.is_encoder_decoder
                                                   else hf_config.hidden_size)  # encoder-state width
        self.query_prefix = config.extra.get("query_prefix")
        if self.query_prefix:
            self._add_query_token(self.query_prefix)
        self.eos, self.bos = config.n_codes, config.n_codes + 1
        self.code_embed = nn.Embedding(config.n_codes + 2, d)
        self.head = nn.Linear(d, config.n_codes + 1)  # codes + end-of-docid
        nn.init.normal_(self.code_embed.weight, std=0.02)

    def _add_query_token(self, token: str) -> None:
        """A task token prefixed to every query (MERGE's <retrieval>, Sec. 3.2): a new special token whose
        input embedding starts at the mean of the others (deterministic, so cached frozen states agree)."""
        if token in self.tokenizer.get_vocab():
            return
        self.tokenizer.add_special_tokens({"additional_special_tokens": [token]})
        emb = self.encoder.get_input_embeddings()
        old = emb.weight.data
        new = nn.Embedding(len(self.tokenizer), old.shape[1], padding_idx=emb.padding_idx).to(old)
        new.weight.data[: old.shape[0]] = old
        new.weight.data[old.shape[0]:] = old.mean(0)
        self.encoder.set_input_embeddings(new)
        self.hf_config.vocab_size = len(self.tokenizer)
        if hasattr(self.encoder, "config"):
            self.encoder.config.vocab_size = len(self.tokenizer)

    def query_texts(self, texts: list[str]) -> list[str]:
        """Queries as the model reads them: with its task token in front when it has one."""
        return [f"{self.query_prefix} {t}" for t in texts] if self.query_prefix else list(texts)

    # -- encoder ---------------------------------------------------------------------------------
    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, truncation=True, max_length=max_length, padding=True,
                             return_tensors="pt", return_token_type_ids=False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode_texts(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.code_embed.weight.device
        batch = self.tokenize(texts, max_length or self.config.query_max_length)
        ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        return self.encode(ids, mask), mask

    def freeze_encoder(self, frozen: bool = True) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            self.encoder.eval()

    # -- decoder ---------------------------------------------------------------------------------
    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher forcing. targets (B, T) codes, -100 = padding -> logits (B, T, n_codes + 1)."""
        prev = torch.cat([torch.full_like(targets[:, :1], self.bos), targets[:, :-1]], 1)
        prev = prev.masked_fill(prev < 0, self.eos)
        hidden = self.decoder(self.code_embed(prev), memory, memory_mask)
        return self.head(hidden)

    def start(self, memory: torch.Tensor, memory_mask: torch.Tensor):
        return self.decoder.start(memory, memory_mask)

    def step(self, state, prev_codes: torch.Tensor) -> tuple[torch.Tensor, object]:
        """One decoding step for every beam row: previous codes (rows,) -> logits (rows, n_codes + 1)."""
        hidden, state = self.decoder.step(state, self.code_embed(prev_codes))
        return self.head(hidden), state

    def reorder(self, state, rows: torch.Tensor):
        return self.decoder.reorder(state, rows)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Written into a temporary sibling folder and renamed, so a reader never sees half a model."""
        with atomic_path(folder) as tmp:
            (tmp / "backbone").mkdir(parents=True)
            self.hf_config.save_pretrained(tmp / "backbone")
            self.tokenizer.save_pretrained(tmp / "backbone")
            (tmp / "genir_model.json").write_text(json.dumps(asdict(self.config), indent=1))
            state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
            save_file(_untie(state), str(tmp / "model.safetensors"))

    @classmethod
    def load(cls, folder: str | Path, map_location: str = "cpu") -> DocidSeq2Seq:
        """Load a model folder strictly: a missing, damaged or foreign file, an unknown setting in
        ``genir_model.json`` or a weight that is missing, unknown or of another shape is a DataError naming
        the file (never a model that silently keeps random weights)."""
        folder = Path(folder)
        config = read_model_config(folder)
        architecture = config.extra.get("architecture")
        if cls is DocidSeq2Seq and architecture is not None:
            found = find_architecture(architecture)  # the subclass that saved it
            if found is None:
                raise DataError(folder / "genir_model.json", None, (
                    f"unknown architecture {architecture!r}: no imported class registers it and no installed "
                    f"package declares it (entry points {ARCHITECTURE_ENTRY_POINTS!r})"))
            cls = found
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise DataError(weights, None, "missing: not a complete model folder")
        try:
            state = load_file(str(weights), device=map_location)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
            raise DataError(weights, None, f"not a readable safetensors file ({e})") from None
        if not (folder / "backbone" / "config.json").is_file():
            raise DataError(folder / "backbone", None, "missing the backbone's config.json")
        try:
            model = cls(config, _hf_dir=str(folder / "backbone"), _from_config=True)
        except (OSError, ValueError) as e:  # transformers' errors on a damaged config or tokenizer file
            for f in sorted((folder / "backbone").glob("*.json")):  # name the damaged file where it is one
                try:
                    json.loads(f.read_bytes().decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as bad:
                    raise DataError(f, None, f"not readable as JSON ({bad})") from None
            raise DataError(folder / "backbone", None, f"not a readable backbone folder ({e})") from None
        own = model.state_dict()
        missing, unknown = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unknown or shapes:
            parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in (("missing weights", missing),
                     ("unknown weights", unknown), ("weights of another shape", shapes)) if v]
            raise DataError(weights, None, "does not fit the model in genir_model.json: " + "; ".join(parts))
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:  # a model with NaN or infinite weights answers nothing, or garbage: refuse it by name
            raise DataError(weights, None, f"{len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0]}): "
                                           "the model is damaged; retrain it (genir run --redo NAME)")
        model.load_state_dict(state, strict=True)
        return model.eval()

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def read_model_config(folder: Path) -> ModelConfig:
    path = folder / "genir_model.json"
    if not path.is_file():
        raise DataError(path, None, "missing: not a genir model folder")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, None, f"not readable as JSON ({e})") from None
    if not isinstance(values, dict):
        raise DataError(path, None, "expected a JSON object of model settings")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(values) - known)
    if unknown or "n_codes" not in values:
        raise DataError(path, None, f"unknown setting {unknown[0]!r}" if unknown else "no 'n_codes'")
    hints = typing.get_type_hints(ModelConfig)
    try:  # every value of the declared type, as a setting is checked (a damaged file, not a crash later)
        values = {k: coerce(hints[k], v, k) for k, v in values.items()}
        if not isinstance(values.get("extra", {}), dict):
            raise SettingsError(f"extra: expected a mapping, got {values['extra']!r}")
        return ModelConfig(**values)
    except (TypeError, SettingsError) as e:
        raise DataError(path, None, str(e)) from None


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage (tied embeddings): store tied tensors once, clone the rest."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        if ptr in seen:
            out[k] = v.clone()
        else:
            seen[ptr] = k
            out[k] = v
    return out
