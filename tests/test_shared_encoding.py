"""Shared query encodings: a member gets the states it would have computed itself, whatever else the batch
held (other members' texts, a longer truncation, the previous batch), and searchers whose encoders differ
do not share."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from genir.search.shared_encoding import QueryEncoder, SharedEncoders, SharedEncoding


@pytest.fixture(scope="module")
def encoder(tiny_bert) -> QueryEncoder:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_bert).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    return QueryEncoder(tokenizer, lambda ids, mask: model(input_ids=ids, attention_mask=mask).last_hidden_state,
                        model, 64, torch.device("cpu"))


TEXTS = ["cells", "a much longer query about the cells of the immune system and what they do in the body",
         "protein folding", "cells"]


def _same(got, want) -> None:
    (s1, m1), (s2, m2) = got, want
    assert torch.equal(m1, m2)
    real = m2.bool()
    assert torch.allclose(s1[real], s2[real], atol=1e-5)


def test_a_member_gets_its_own_states_at_its_own_truncation(encoder):
    group = SharedEncoding(encoder, wait_s=0.05)
    asks = [(TEXTS, 64), (TEXTS[:3], 6), (TEXTS[1:3], 256), (["protein folding"], 6)]
    with ThreadPoolExecutor(len(asks)) as pool:  # at about the same time: one batch where it can
        got = list(pool.map(lambda a: group.encode(*a), asks))
    for (texts, max_length), states in zip(asks, got, strict=True):
        _same(states, encoder.encode(texts, max_length))
    assert sum(group.batches.values()) < len(asks)  # some of them went in together


def test_a_text_is_kept_for_the_members_still_to_ask_and_for_them_only(encoder):
    group = SharedEncoding(encoder)
    a, b, c = group.member("a"), group.member("b"), group.member("c")
    _same(a.encode(TEXTS, 64), encoder.encode(TEXTS, 64))
    encoded = sum(n * c for n, c in group.batches.items())
    _same(b.encode(TEXTS[:3], 64), encoder.encode(TEXTS[:3], 64))  # kept for b: no new pass
    assert sum(n * c for n, c in group.batches.items()) == encoded
    _same(a.encode(["cells"], 64), encoder.encode(["cells"], 64))  # a had it: a new pass, not a cache
    assert sum(n * c for n, c in group.batches.items()) == encoded + 1
    _same(c.encode([TEXTS[1]], 6), encoder.encode([TEXTS[1]], 6))  # another truncation: not taken from it
    _same(c.encode([TEXTS[1]], 512), encoder.encode([TEXTS[1]], 512))


class Reader:  # the searcher contract: shared_query_encoder() and encode_queries through shared_encoding
    def __init__(self, qe: QueryEncoder):
        self.qe, self.shared_encoding = qe, None

    def shared_query_encoder(self) -> QueryEncoder:
        return self.qe

    def encode_queries(self, texts):
        if self.shared_encoding is not None:
            return self.shared_encoding.encode(texts, self.qe.max_length)
        return self.qe.encode(texts, self.qe.max_length)


def test_searchers_with_different_encoders_do_not_share(tiny_bert, encoder):
    from transformers import AutoModel

    other = AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        next(other.parameters()).add_(0.01)

    changed = QueryEncoder(encoder.tokenizer, lambda i, m: other(input_ids=i, attention_mask=m).last_hidden_state,
                           other, 64, torch.device("cpu"))
    encoders = SharedEncoders()
    assert encoders.attach(Reader(encoder), "a") and encoders.attach(Reader(encoder), "b")
    assert encoders.attach(Reader(changed), "c")
    assert sorted(g.members for g in encoders.groups.values()) == [["a", "b"], ["c"]]

    class Prompted(Reader):  # reads a query with a prompt of its own: the probe sees it, it stays alone
        def encode_queries(self, texts):
            return super().encode_queries([f"query: {t}" for t in texts]) if self.shared_encoding is None \
                else self.shared_encoding.encode(texts, self.qe.max_length)

    assert not encoders.attach(Prompted(encoder), "d")


def test_bf16_passes_share_with_bf16_passes_of_the_same_weights_only(encoder):
    from genir.models.precision import Bf16Encoder

    model = encoder.module
    bf16 = Bf16Encoder(model)
    in_bf16 = QueryEncoder(encoder.tokenizer, lambda i, m: bf16(input_ids=i, attention_mask=m).last_hidden_state,
                           model, 64, torch.device("cpu"), "bf16")
    encoders = SharedEncoders()
    for name, qe in (("a", encoder), ("b", in_bf16), ("c", in_bf16), ("d", encoder)):
        assert encoders.attach(Reader(qe), name)
    assert sorted(g.members for g in encoders.groups.values()) == [["a", "d"], ["b", "c"]]


def test_a_bf16_encoder_hands_on_fp32_and_is_read_as_its_model():
    from transformers.modeling_outputs import BaseModelOutput

    from genir.models.precision import Bf16Encoder, encoder_in

    class Last(torch.nn.Module):  # an encoder whose last operation is a matrix product (bf16 under autocast)
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)
            self.config = {"name": "last"}

        def forward(self, x):
            return BaseModelOutput(last_hidden_state=self.proj(x)), self.proj(x)

    inner = Last()
    wrapped = encoder_in(inner, "bf16")
    assert isinstance(wrapped, Bf16Encoder) and wrapped.config == {"name": "last"}  # the model's own attributes
    x = torch.randn(3, 8)
    out, plain = wrapped(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert inner(x)[1].dtype == torch.bfloat16  # what autocast alone would hand on
    assert out.last_hidden_state.dtype == plain.dtype == torch.float32
    assert torch.allclose(out.last_hidden_state, inner(x)[1], atol=0.05)
    assert encoder_in(inner, "fp32") is inner
