"""Query encodings shared by the searchers of one process that read queries with the same encoder.

With a frozen encoder (genir's default) DSI, GenRet and the dense baseline all read a query with the same
MiniLM: a search over every method side by side encoded it once per method, and the encoder is most of a
query's time on a CPU. :class:`SharedEncoders` groups searchers by what their encoder computes (the
weights, the tokenizer: :meth:`QueryEncoder.key`); each group has a worker that encodes, in one batch, the
texts its members ask for at about the same time, each distinct text once, and keeps a text's states until
every member has had them (:class:`SharedEncoding`). A member gets its own rows,
trimmed to its own padding; a text longer than a member's truncation is encoded again at that length, so a
member sees the states it would have computed itself. A searcher joins only if a probe text encodes the
same through the group as through its own path; int8 encoders are not shared (their copies differ), and bf16
ones only with bf16 ones of the same weights.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

PROBE = "A probe sentence: does the shared encoder read queries as this searcher does? 42 cells."
States = tuple[torch.Tensor, torch.Tensor]  # (B, L, d) token states, (B, L) attention mask


def take_waiting(waiting: queue.Queue, wait_s: float, full: Callable[[list], bool]) -> list:
    """A worker's next batch: the first item (waiting for it), then whatever arrives within ``wait_s``,
    until ``full(items)`` (the service's per-method batchers and the shared encoders' workers)."""
    items = [waiting.get()]
    deadline = time.perf_counter() + wait_s
    while not full(items):
        try:
            items.append(waiting.get(timeout=max(0.0, deadline - time.perf_counter())))
        except queue.Empty:
            break
    return items


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
    precision: str = "fp32"  # search.encoder_precision it runs in: bf16 and fp32 passes differ

    def key(self, weights: str | None) -> str | None:
        """What this encoder computes, given ``module_digest(self.module)``; None: not to be shared."""
        tokens = tokenizer_digest(self.tokenizer)
        return None if weights is None or tokens is None else f"{weights}:{tokens}:{self.device}:{self.precision}"

    def encode(self, texts: list[str], max_length: int) -> States:
        enc = self.tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                             return_token_type_ids=False)
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        with torch.inference_mode():
            return self.forward(ids, mask), mask


@dataclass
class _Kept:
    """One text's states from one pass of the encoder, kept for the members that have not had them yet."""

    at: int  # the max_length the pass truncated at
    states: torch.Tensor  # (n, d): the text's own tokens
    mask: torch.Tensor  # (n,)
    when: float
    served: set

    def usable(self, max_length: int) -> bool:
        """Whether these are the states a pass at ``max_length`` gives (the same truncation)."""
        n = len(self.mask)
        return n <= max_length and (n < self.at or max_length <= self.at)


class SharedEncoding:
    """One group's worker: every text asked for while it was busy (up to ``max_texts``) in one batch, each
    distinct text once. A text's states are kept until every member has had them once (at most ``keep_s``):
    the methods of a side by side search do not reach the encoder together when they are busy with other
    batches. A member asking for a text again gets a new pass: this is not a cache of past queries."""

    def __init__(self, encoder: QueryEncoder, wait_s: float = 0.002, max_texts: int = 256, keep_s: float = 10.0,
                 max_kept: int = 4096):
        self.encoder, self.wait_s, self.max_texts = encoder, wait_s, max_texts
        self.keep_s, self.max_kept = keep_s, max_kept
        self.members: list[str] = []
        self.batches: Counter = Counter()  # texts encoded per batch -> count (the service's /health)
        self.asked = 0  # texts asked for by members, repeats included
        self._kept: dict[str, _Kept] = {}
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name="shared-encoder", daemon=True).start()

    def member(self, name: str) -> _Member:
        """What a searcher holds: ``encode(texts, max_length)`` on behalf of ``name``."""
        if name not in self.members:
            self.members.append(name)
        return _Member(self, name)

    def encode(self, texts: list[str], max_length: int, member: str | None = None) -> States:
        """The token states of ``texts`` truncated at ``max_length``, as ``QueryEncoder.encode`` gives them."""
        future: Future = Future()
        self._queue.put((list(texts), max_length, member, future))
        return future.result()

    def _work(self) -> None:
        while True:
            requests = take_waiting(self._queue, self.wait_s,
                                    lambda items: sum(len(r[0]) for r in items) >= self.max_texts)
            try:
                self._answer(requests)
            except Exception as e:  # each waiting searcher raises it (the service answers a 500)
                for *_, future in requests:
                    if not future.done():
                        future.set_exception(e)

    def _take(self, text: str, max_length: int, member: str | None) -> _Kept | None:
        kept = self._kept.get(text)
        if kept is None or member is None or member in kept.served or not kept.usable(max_length):
            return None
        return kept

    def _answer(self, requests: list) -> None:
        now = time.perf_counter()
        for text in [t for t, kept in self._kept.items() if now - kept.when > self.keep_s]:
            del self._kept[text]
        self.asked += sum(len(r[0]) for r in requests)
        missing = [(t, m) for texts, m, member, _ in requests for t in texts if self._take(t, m, member) is None]
        fresh: dict[str, _Kept] = {}
        if missing:
            texts = list(dict.fromkeys(t for t, _ in missing))
            at = max(m for _, m in missing)
            states, mask = self.encoder.encode(texts, at)
            for i, (t, n) in enumerate(zip(texts, mask.sum(1).tolist(), strict=True)):
                fresh[t] = _Kept(at, states[i, :n], mask[i, :n], now, set())
            self.batches[len(texts)] += 1
        everyone = set(self.members)
        for texts, max_length, member, future in requests:
            rows, taken = [], {}
            for t in texts:
                kept = taken.get(t) or self._take(t, max_length, member)
                if kept is None and t in fresh and fresh[t].usable(max_length):
                    kept = fresh[t]
                if kept is None:  # truncated differently from every pass: its own
                    break
                rows.append(kept)
                taken[t] = kept
                kept.served.add(member)
            if len(rows) < len(texts):
                future.set_result(self.encoder.encode(texts, max_length))
                continue
            width = max(len(r.mask) for r in rows)
            states = rows[0].states.new_zeros((len(rows), width, rows[0].states.shape[-1]))
            mask = rows[0].mask.new_zeros((len(rows), width))
            for j, r in enumerate(rows):  # a row's own tokens; the padding is masked out
                states[j, : len(r.mask)], mask[j, : len(r.mask)] = r.states, r.mask
            future.set_result((states, mask))
        for t, kept in fresh.items():  # kept for the members still to ask
            if not everyone <= kept.served and len(self._kept) < self.max_kept:
                self._kept[t] = kept
        for t in [t for t, kept in self._kept.items() if everyone <= kept.served]:
            del self._kept[t]


@dataclass
class _Member:
    group: SharedEncoding
    name: str

    def encode(self, texts: list[str], max_length: int) -> States:
        return self.group.encode(texts, max_length, self.name)


class SharedEncoders:
    """The groups of one process: ``attach(searcher)`` shares its query encoder with the searchers attached
    before it that read queries the same way. A searcher takes part by ``shared_query_encoder()`` (what it reads
    queries with, or None) and a ``shared_encoding`` attribute its ``encode_queries`` uses when set."""

    def __init__(self, wait_s: float = 0.002) -> None:
        self.wait_s = wait_s
        self.groups: dict[str, SharedEncoding] = {}
        # module -> its weights' digest: a live index reopens its searchers over the same models at every
        # change, and hashing an encoder's weights takes a tenth of a second; served weights do not change
        self._digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def attach(self, searcher, name: str) -> bool:
        """True when ``searcher`` now encodes its queries through a shared group."""
        describe = getattr(searcher, "shared_query_encoder", None)
        encoder = describe() if describe is not None else None
        if encoder is None:
            return False
        if encoder.module not in self._digests:
            self._digests[encoder.module] = module_digest(encoder.module)
        key = encoder.key(self._digests[encoder.module])
        if key is None:
            return False
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = SharedEncoding(encoder, self.wait_s)
        with torch.inference_mode():
            own = searcher.encode_queries([PROBE])
            searcher.shared_encoding = _Member(group, name)
            through = searcher.encode_queries([PROBE])
        if not _close(own, through):  # reads queries some other way (a prompt, a pooling): not shared
            searcher.shared_encoding = None
            return False
        searcher.shared_encoding = group.member(name)
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
