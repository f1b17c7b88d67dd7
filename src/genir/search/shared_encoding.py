"""Query encodings shared by the searchers of one process that read queries with the same encoder.

With a frozen encoder (genir's default) DSI, GenRet and the dense baseline all read a query with the same
MiniLM: a search over every method side by side encoded it once per method, and the encoder is most of a
query's time on a CPU. :class:`SharedEncoders` groups searchers by what their encoder computes (the
weights, the tokenizer: :attr:`QueryEncoder.key`); each group has a worker that encodes, in one batch, the
texts its members ask for at about the same time, each distinct text once. A member gets its own rows,
trimmed to its own padding; a text longer than a member's truncation is encoded again at that length, so a
member sees the states it would have computed itself. A searcher joins only if a probe text encodes the
same through the group as through its own path; int8 encoders are not shared (their copies differ).
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

PROBE = "A probe sentence: does the shared encoder read queries as this searcher does? 42 cells."
States = tuple[torch.Tensor, torch.Tensor]  # (B, L, d) token states, (B, L) attention mask


def module_digest(module: torch.nn.Module) -> str | None:
    """A digest of a module's weights and buffers; None when one is quantised (int8 copies are not shared)."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in sorted(module.state_dict().items()):
        if not isinstance(value, torch.Tensor) or value.is_quantized:
            return None
        value = value.detach().to("cpu").contiguous()
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.hexdigest()


def tokenizer_digest(tokenizer) -> str | None:
    """What a fast tokenizer does to a text (normaliser, pre-tokeniser, vocabulary), without its
    truncation and padding state, which the shared encoder sets per call."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=16).hexdigest()


@dataclass
class QueryEncoder:
    """What a searcher reads queries with: token states = ``forward(input_ids, attention_mask)`` of its
    tokenizer's ids, truncated at ``max_length``."""

    tokenizer: Any
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    module: torch.nn.Module  # whose weights ``forward`` runs
    max_length: int
    device: torch.device

    @property
    def key(self) -> str | None:
        weights, tokens = module_digest(self.module), tokenizer_digest(self.tokenizer)
        return None if weights is None or tokens is None else f"{weights}:{tokens}:{self.device}"

    def encode(self, texts: list[str], max_length: int) -> States:
        enc = self.tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                             return_token_type_ids=False)
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        with torch.inference_mode():
            return self.forward(ids, mask), mask


@dataclass
class _Batch:
    """One pass of the encoder: the texts' rows, at which truncation, when."""

    at: int  # the max_length it was encoded at
    row: dict[str, int]
    states: torch.Tensor
    mask: torch.Tensor
    lengths: list[int]
    when: float

    def usable(self, text: str, max_length: int) -> bool:
        """Whether the text's states here are those a pass at ``max_length`` gives (the same truncation)."""
        i = self.row.get(text)
        if i is None:
            return False
        n = self.lengths[i]
        return n <= max_length and (n < self.at or max_length <= self.at)


class SharedEncoding:
    """One group's worker: every text asked for while it was busy (up to ``max_texts``) in one batch. The
    last batch answers a member that asks for the same texts within ``reuse_s`` (the methods of one side by
    side search do not reach the encoder at the same instant); it is not a cache of past queries."""

    def __init__(self, encoder: QueryEncoder, wait_s: float = 0.002, max_texts: int = 256, reuse_s: float = 0.05):
        self.encoder, self.wait_s, self.max_texts, self.reuse_s = encoder, wait_s, max_texts, reuse_s
        self.members: list[str] = []
        self.batches: Counter = Counter()  # texts encoded per batch -> count (the service's /health)
        self.asked = 0  # texts asked for by members, repeats included
        self._last: _Batch | None = None
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name="shared-encoder", daemon=True).start()

    def encode(self, texts: list[str], max_length: int) -> States:
        """The token states of ``texts`` truncated at ``max_length``, as ``QueryEncoder.encode`` gives them."""
        future: Future = Future()
        self._queue.put((list(texts), max_length, future))
        return future.result()

    def _work(self) -> None:
        while True:
            requests = [self._queue.get()]
            deadline = time.perf_counter() + self.wait_s
            while sum(len(r[0]) for r in requests) < self.max_texts:
                try:
                    requests.append(self._queue.get(timeout=max(0.0, deadline - time.perf_counter())))
                except queue.Empty:
                    break
            try:
                self._answer(requests)
            except Exception as e:  # each waiting searcher raises it (the service answers a 500)
                for *_, future in requests:
                    if not future.done():
                        future.set_exception(e)

    def _answer(self, requests: list) -> None:
        now = time.perf_counter()
        last = self._last if self._last is not None and now - self._last.when < self.reuse_s else None
        self.asked += sum(len(r[0]) for r in requests)
        missing = [(t, m) for texts, m, _ in requests for t in texts if last is None or not last.usable(t, m)]
        fresh = None
        if missing:
            texts = list(dict.fromkeys(t for t, _ in missing))
            at = max(m for _, m in missing)
            states, mask = self.encoder.encode(texts, at)
            fresh = _Batch(at, {t: i for i, t in enumerate(texts)}, states, mask, mask.sum(1).tolist(), now)
            self.batches[len(texts)] += 1
            self._last = fresh
        for texts, max_length, future in requests:
            sources = []
            for t in texts:
                source = next((b for b in (fresh, last) if b is not None and b.usable(t, max_length)), None)
                if source is None:  # truncated differently from every pass: its own
                    break
                sources.append((source, source.row[t]))
            if len(sources) < len(texts):
                future.set_result(self.encoder.encode(texts, max_length))
                continue
            width = max(b.lengths[i] for b, i in sources)
            first = sources[0][0].states
            states = first.new_zeros((len(texts), width, first.shape[-1]))
            mask = sources[0][0].mask.new_zeros((len(texts), width))
            for j, (b, i) in enumerate(sources):  # a row's own tokens; the padding is masked out
                n = b.lengths[i]
                states[j, :n], mask[j, :n] = b.states[i, :n], b.mask[i, :n]
            future.set_result((states, mask))


class SharedEncoders:
    """The groups of one process: ``attach(searcher)`` shares its query encoder with the searchers attached
    before it that read queries the same way. A searcher takes part by ``shared_query_encoder()`` (what it reads
    queries with, or None) and a ``shared_encoding`` attribute its ``encode_queries`` uses when set."""

    def __init__(self, wait_s: float = 0.002) -> None:
        self.wait_s = wait_s
        self.groups: dict[str, SharedEncoding] = {}

    def attach(self, searcher, name: str) -> bool:
        """True when ``searcher`` now encodes its queries through a shared group."""
        describe = getattr(searcher, "shared_query_encoder", None)
        encoder = describe() if describe is not None else None
        key = encoder.key if encoder is not None else None
        if key is None:
            return False
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = SharedEncoding(encoder, self.wait_s)
        with torch.inference_mode():
            own = searcher.encode_queries([PROBE])
            searcher.shared_encoding = group
            through = searcher.encode_queries([PROBE])
        if not _close(own, through):  # reads queries some other way (a prompt, a pooling): not shared
            searcher.shared_encoding = None
            return False
        if name not in group.members:
            group.members.append(name)
        return True

    def health(self) -> dict:
        return {",".join(g.members) or key[:8]: {"texts_asked": g.asked, "texts_encoded": sum(
            n * c for n, c in g.batches.items()), "batches": dict(sorted(g.batches.items()))}
            for key, g in self.groups.items()}


def _close(a, b) -> bool:
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    return len(a) == len(b) and all(
        torch.as_tensor(x).shape == torch.as_tensor(y).shape
        and torch.allclose(torch.as_tensor(x).float(), torch.as_tensor(y).float(), atol=1e-5, rtol=1e-4)
        for x, y in zip(a, b, strict=True))
