"""Tied-Atomic: generative and dense inference agree exactly; live add/delete; persistence; training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genir.data.collection import Document
from genir.methods.tied import TiedSeq2Seq
from genir.methods.tied.search import TiedAtomicIndex, TiedAtomicSearcher
from genir.models import DocidSeq2Seq, ModelConfig

WORDS = "cell protein gene virus tumour brain heart lung blood vitamin drug trial mouse human".split()


def _docs(n: int, seed: int = 0) -> list[Document]:
    rng = np.random.default_rng(seed)
    return [Document(f"d{seed}-{i}", " ".join(rng.choice(WORDS, size=12))) for i in range(n)]


@pytest.fixture()
def model(tiny_bert):
    torch.manual_seed(0)
    return TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64)).eval()


QUERIES = {"a": "vitamin in blood", "b": "brain tumour trial", "c": "mouse gene"}


def test_generative_and_dense_agree_exactly(model):
    index = TiedAtomicIndex(model.decoder.d_model)
    dense = TiedAtomicSearcher(model, index, mode="dense")
    dense.add_documents(_docs(60))
    generative = TiedAtomicSearcher(model, index, mode="generative")
    rd, rg = dense.batch_search(QUERIES, 20), generative.batch_search(QUERIES, 20)
    for q in QUERIES:
        assert len(rd[q]) == len(rg[q]) == 20
        np.testing.assert_allclose([h.score for h in rd[q]], [h.score for h in rg[q]], rtol=1e-4, atol=1e-5)
        scores = [h.score for h in rd[q]]
        # same documents at the same ranks wherever scores are not tied
        for i in range(19):
            if scores[i] - scores[i + 1] > 1e-4:
                assert {h.doc_id for h in rd[q][: i + 1]} == {h.doc_id for h in rg[q][: i + 1]}
    agreement = dense.compare_modes(QUERIES, 20)
    assert agreement["same_ranking"] == 3 and agreement["max_score_difference"] < 1e-4
    # the scores are the dot products h_query . h_doc (Tied-Atomic Eq. 1-2)
    ids = index.doc_ids()
    h_docs = dense.encode([d.full_text for d in _docs(60)], model.config.doc_max_length)
    h_q = dense.encode([QUERIES["a"]], model.config.query_max_length)[0]
    best = rd["a"][0]
    np.testing.assert_allclose(best.score, h_docs[ids.index(best.doc_id)] @ h_q, rtol=1e-4)


def test_live_add_delete_and_reload(model, tmp_path):
    index = TiedAtomicIndex(model.decoder.d_model)
    searcher = TiedAtomicSearcher(model, index, mode="generative")
    old, new = _docs(30, seed=1), _docs(10, seed=2)
    searcher.add_documents(old)
    before = searcher.batch_search(QUERIES, 40)
    assert all(h.doc_id.startswith("d1-") for hits in before.values() for h in hits)
    searcher.add_documents(new)  # no retraining: new documents are encoded and searchable at once
    after = searcher.batch_search(QUERIES, 40)
    assert any(h.doc_id.startswith("d2-") for hits in after.values() for h in hits)
    assert len(after["a"]) == 40
    with pytest.raises(ValueError, match="already in the index"):
        searcher.add_documents(new[:1])
    searcher.remove_documents([d.id for d in new[:5]])
    assert len(index) == 35
    gone = {d.id for d in new[:5]}
    assert not gone & {h.doc_id for hits in searcher.batch_search(QUERIES, 40).values() for h in hits}
    with pytest.raises(KeyError):
        searcher.remove_documents(["nope"])
    index.save(tmp_path / "idx")
    again = TiedAtomicSearcher(model, TiedAtomicIndex.load(tmp_path / "idx"), mode="dense")
    for q, hits in searcher.batch_search(QUERIES, 35).items():
        reloaded = again.batch_search({q: QUERIES[q]}, 35)[q]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in reloaded], rtol=1e-4, atol=1e-5)


def test_contrastive_training_separates_positives(tiny_bert):
    from genir.methods.tied import tied_contrastive_loss
    from genir.settings import TrainingSettings
    from genir.training import EncodedTexts, Trainer
    from genir.training.data import ContrastiveCollator, ContrastiveDataset, TextInputs

    torch.manual_seed(0)
    model = TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64, dropout=0.0))
    model.freeze_encoder(True)
    docs = _docs(16, seed=3)
    texts = [d.text for d in docs] + [" ".join(d.text.split()[:4]) for d in docs]
    encoded = EncodedTexts(model, texts, 16, show_progress=False)
    pairs = [(16 + i, i) for i in range(16)]
    inputs = TextInputs(texts, 16, model, encoded)
    collate = ContrastiveCollator(inputs, {i: i for i in range(16)}, {16 + i: [(i + 1) % 16] for i in range(16)},
                                  list(range(16)), n_negatives=1)
    trainer = Trainer(model, tied_contrastive_loss, ContrastiveDataset(pairs), collate,
                      TrainingSettings(epochs=40, batch_size=8, lr=3e-3, checkpoint_every=0), show_progress=False)
    trainer.train()
    assert np.mean([x for _, x in trainer.history[-5:]]) < 0.5 * np.mean([x for _, x in trainer.history[:5]])


def _scifact_slice(tmp_path, shared_datasets):
    """30 SciFact training and 10 test queries over a 150-document slice (their judged documents + 120)."""
    import json

    from genir.data import load_dataset

    c = load_dataset("scifact", shared_datasets)
    train = dict(list(c.qrels["train"].items())[:30])
    test = dict(list(c.qrels["test"].items())[:10])
    keep = sorted({d for r in (*train.values(), *test.values()) for d in r} | set(c.doc_ids[:120]))
    folder = tmp_path / "slice"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": c.corpus[d].full_text}) + "\n"
                                                 for d in keep))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": c.queries[q]}) + "\n"
                                                  for q in (*train, *test)))
    for split, rows in (("train", train), ("test", test)):
        (folder / "qrels" / f"{split}.tsv").write_text(
            "".join(f"{q}\t{d}\t{g}\n" for q, r in rows.items() for d, g in r.items()))
    return folder


def test_teacher_scores_file_and_distillation_run(tmp_path, tiny_bert, shared_datasets):
    from genir.data import DataError, load_dataset
    from genir.methods import make_settings
    from genir.pipeline import run
    from genir.search.bm25 import BM25Searcher
    from genir.training.data import read_teacher_scores

    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\td1\t0.5\nq1\td2\thigh\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: score 'high'"):
        read_teacher_scores(bad)
    # a teacher: BM25 scores of SciFact training queries over a 150-document slice
    folder = _scifact_slice(tmp_path, shared_datasets)
    c = load_dataset(str(folder))
    train = c.qrels["train"]
    keep = list(c.corpus)
    bm25 = BM25Searcher([c.corpus[d] for d in keep])
    hits = bm25.batch_search({q: c.queries[q] for q in train}, 20)
    teacher = tmp_path / "teacher.tsv"
    with open(teacher, "w") as f:
        for q, hs in hits.items():
            for h in hs:
                f.write(f"{q}\t{h.doc_id}\t{h.score}\n")
            for d in train[q]:  # the teacher also scores each positive
                f.write(f"{q}\t{d}\t{max(h.score for h in hs) + 1 if hs else 1.0}\n")
    report = run(make_settings({"data": {"dataset": str(folder)}, "model": {"backbone": tiny_bert}, "baselines": [],
                                "methods": ["tied-atomic-distill"], "tied": {"teacher_scores": str(teacher)},
                                "training": {"epochs": 2, "batch_size": 8}, "out": str(tmp_path / "out")}))
    system = report["systems"][0]
    assert system["name"] == "tied-atomic-distill" and system["metrics"]["full"]["n"] == 10
    # every training query with a scored positive and another scored document is one example per epoch
    from genir.training import planned_steps

    scored = read_teacher_scores(teacher)
    pairs = sum(1 for q in train for d, g in train[q].items()
                if g > 0 and d in scored.get(q, {}) and len(scored.get(q, {})) > 1)
    assert system["train_steps"] == planned_steps(pairs, 8, 2) > 0


class _BagOfWordsEncoder:
    """A stand-in sentence encoder: unit-length counts over WORDS (the teacher only calls ``encode``)."""

    def encode(self, texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True):
        v = np.array([[t.split().count(w) for w in WORDS] for t in texts], dtype=np.float32) + 1e-3
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_dense_bm25_teacher_scores_are_cosine_plus_a_share_of_normalised_bm25():
    """genir.search.teacher: T(q, d) = cos(q, d) + alpha * BM25(q, d) / max BM25(q); its candidates hold the
    teacher's, BM25's and the encoder's top ``depth`` and the documents asked for."""
    from genir.search.bm25 import BM25Searcher
    from genir.search.teacher import dense_bm25_scores, teacher_scores

    docs = _docs(40)
    bm25, enc = BM25Searcher(docs), _BagOfWordsEncoder()
    emb = enc.encode([d.full_text for d in docs])
    texts = list(QUERIES.values())
    cos = enc.encode(texts) @ emb.T
    lexical = bm25.batch_search(dict(enumerate(texts)), len(docs))
    index = {d.id: i for i, d in enumerate(docs)}
    for alpha in (0.0, 0.3):
        scores = dense_bm25_scores(bm25, enc.encode(texts), emb, texts, alpha, depth=5, keep=[{39}, set(), set()],
                                   chunk=2)
        assert len(scores) == len(texts) and 39 in scores[0]
        for i, row in enumerate(scores):
            lex = {index[h.doc_id]: h.score for h in lexical[i]}
            top = max(lex.values())
            for d, s in row.items():
                assert s == pytest.approx(cos[i, d] + alpha * lex.get(d, 0.0) / top, abs=1e-5)
            # the encoder's own top 5 and BM25's (ties at the 5th place aside)
            assert set(np.flatnonzero(cos[i] > np.sort(cos[i])[-5])) <= set(row)
            fifth = sorted(lex.values())[-5]
            assert {d for d, v in lex.items() if v > fifth} <= set(row)
            assert len(row) < len(docs)
    # alpha changes the ranking: BM25 is not ignored
    at0, at1 = (dense_bm25_scores(bm25, enc.encode(texts), emb, texts, a, depth=40) for a in (0.0, 1.0))
    assert any(sorted(a, key=a.get) != sorted(b, key=b.get) for a, b in zip(at0, at1, strict=True))
    # several alphas in one pass (BM25 run once): each the same as that alpha alone, candidates included
    # (in chunks of one size: BLAS may round the last bit by the matrix's shape, and bag-of-words cosines tie)
    both = teacher_scores(bm25, enc.encode(texts), emb, texts, [0.3, 1.0], depth=3, chunk=2)
    for alpha, rows in zip((0.3, 1.0), both, strict=True):
        alone = dense_bm25_scores(bm25, enc.encode(texts), emb, texts, alpha, depth=3, chunk=2)
        assert [set(r) for r in rows] == [set(r) for r in alone]
        assert all(r == pytest.approx(a, abs=1e-6) for r, a in zip(rows, alone, strict=True))


def test_builtin_teacher_distils_queries_and_pseudo_queries(tmp_path, tiny_bert, shared_datasets):
    """``--teacher-scores dense+bm25``: every training pair of the contrastive recipe (training queries and
    pseudo-queries) is distilled, each margin the teacher's for its text; no file is read."""
    from genir.methods import make_settings
    from genir.methods.tied import builtin_distillation_data, check_distillation, training_pairs
    from genir.pipeline import run
    from genir.search.teacher import dense_bm25_scores
    from genir.workspace import Workspace

    folder = _scifact_slice(tmp_path, shared_datasets)
    values = {"data": {"dataset": str(folder)}, "model": {"backbone": tiny_bert}, "baselines": [],
              "methods": ["tied-atomic-distill"], "tied": {"teacher_scores": "dense+bm25", "teacher_bm25": 0.5},
              "training": {"epochs": 1, "batch_size": 8}, "out": str(tmp_path / "out")}
    ws = Workspace(make_settings(values), tmp_path / "out")
    check_distillation(ws, ws.settings.tied)  # the spec is not a file to read
    model = TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64))
    dataset, collate = builtin_distillation_data(ws, ws.settings.tied, model)
    examples = ws.examples()
    pairs = training_pairs(examples)
    paired = set(pairs)
    kinds = {kind for t, d, kind in examples.examples if (t, d) in paired}
    assert len(dataset) == len(pairs) and kinds == {"retrieval", "indexing"}
    t, pos = pairs[0]
    # the teacher's cosine is with each document's leading span, the text training gives the student
    lead = ws.dense_encoder().encode(ws.lead_texts(ws.docs), normalize_embeddings=True, convert_to_numpy=True)
    query = ws.dense_encoder().encode([examples.texts[t]], normalize_embeddings=True, convert_to_numpy=True)
    expected = dense_bm25_scores(ws.bm25(), query, lead, [examples.texts[t]], 0.5,
                                 ws.settings.tied.teacher_depth, keep=[{pos}])[0]
    assert collate.teacher[t] == pytest.approx(expected, abs=1e-6)
    batch = collate([pairs[0]])
    neg = [d for d in expected if d != pos]
    assert any(float(batch["margin"][0]) == pytest.approx(expected[pos] - expected[n], abs=1e-5) for n in neg)
    report = run(make_settings(values))
    system = report["systems"][0]
    assert system["name"] == "tied-atomic-distill" and system["train_steps"] == -(-len(pairs) // 8)


def test_builtin_teacher_reads_the_frozen_cache_where_it_holds_the_dense_encoders_states(
        tmp_path, tiny_bert, shared_datasets):
    """When the frozen backbone is the dense encoder and its cache reads as many tokens, the teacher's
    embeddings of the training texts and documents are mean-pooled from the cache (no second pass of the
    encoder) and match what the encoder gives; any other backbone has the encoder read them."""
    from genir.methods import make_settings
    from genir.methods.tied import builtin_distillation_data, teacher_embeddings, training_pairs
    from genir.search.teacher import dense_bm25_scores
    from genir.workspace import Workspace

    folder = _scifact_slice(tmp_path, shared_datasets)

    def workspace(dense_model: str | None) -> tuple[Workspace, DocidSeq2Seq]:
        values = {"data": {"dataset": str(folder), "span_words": 24}, "dense": {"model": dense_model},
                  "model": {"backbone": tiny_bert, "doc_max_length": 64}, "methods": ["tied-atomic-distill"],
                  "tied": {"teacher_scores": "dense+bm25"}, "baselines": []}
        ws = Workspace(make_settings(values), tmp_path / f"out-{dense_model is None}")
        ws.dense_encoder().max_seq_length = 64  # the cache's length (the tiny backbone has 128 positions)
        read: list[str] = []
        encode = ws.dense_encoder().encode
        ws.dense_encoder().encode = lambda texts, **kw: (read.extend(texts), encode(texts, **kw))[1]
        ws.read = read
        return ws, TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64))

    ws, model = workspace(tiny_bert)
    examples = ws.examples()
    text_ids = sorted({t for t, _ in training_pairs(examples)})
    texts = [examples.texts[t] for t in text_ids]
    vectors = teacher_embeddings(ws, model)(texts, text_ids)
    assert ws.read == []  # every text came from the cache
    truth = ws.dense_encoder().encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(vectors - truth).max() < 5e-3  # float16 states, the encoder's own pooling
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # the documents' leading spans are the texts training gives them (the cache's doc_text)
    lead = ws.lead_texts(ws.docs)
    assert all(examples.texts[examples.doc_text[d]] == lead[d] for d in examples.doc_text)
    ws.read.clear()
    _, collate = builtin_distillation_data(ws, ws.settings.tied, model)
    assert ws.read == [lead[d] for d in range(len(lead)) if d not in examples.doc_text]  # uncached ones only
    docs = ws.dense_encoder().encode(lead, normalize_embeddings=True, convert_to_numpy=True)
    t = text_ids[0]
    expected = dense_bm25_scores(ws.bm25(), truth[:1], docs, texts[:1], 0.3, ws.settings.tied.teacher_depth,
                                 keep=[{d for tt, d in training_pairs(examples) if tt == t}])[0]
    common = set(expected) & set(collate.teacher[t])
    assert len(common) >= 0.9 * len(expected)
    assert all(abs(collate.teacher[t][d] - expected[d]) < 5e-3 for d in common)
    # another dense encoder (the bundled MiniLM) reads every text itself
    other, model = workspace(None)
    assert teacher_embeddings(other, model)(texts[:5], text_ids[:5]).shape == (5, 384) and other.read == texts[:5]


def test_residual_form_starts_as_the_encoders_dense_retriever_and_both_modes_agree(tiny_bert):
    """tied.residual: before training, the text vector is the encoder's sentence embedding (mean-pooled,
    unit length), so Tied-Atomic ranks exactly as the encoder does as a dense retriever; generative decoding
    (the vectors as the output layer) and faiss still agree; training moves the residual."""
    torch.manual_seed(0)
    model = TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64,
                                     extra={"tied_residual": True})).eval()
    docs = _docs(40)
    index = TiedAtomicIndex(model.tied_dim)
    dense = TiedAtomicSearcher(model, index, mode="dense")
    dense.add_documents(docs)
    with torch.no_grad():
        def pooled(texts, length):
            mem, mask = model.encode_texts(texts, length)
            m = mask[..., None].float()
            return torch.nn.functional.normalize((mem * m).sum(1) / m.sum(1), dim=-1)

        cos = pooled(list(QUERIES.values()), model.config.query_max_length) @ \
            pooled([d.full_text for d in docs], model.config.doc_max_length).T
    results = dense.batch_search(QUERIES, 10)
    for i, q in enumerate(QUERIES):
        top = torch.topk(cos[i], 10)
        assert [h.doc_id for h in results[q]] == [docs[j].id for j in top.indices.tolist()]
        np.testing.assert_allclose([h.score for h in results[q]], top.values.numpy(), rtol=1e-4, atol=1e-5)
    generative = TiedAtomicSearcher(model, index, mode="generative")
    assert dense.compare_modes(QUERIES, 10)["same_ranking"] == 3
    assert [h.doc_id for h in generative.search("vitamin in blood", 5)] == [h.doc_id for h in results["a"][:5]]
    # the residual is a trained part: it gets a gradient from the contrastive loss
    from genir.methods.tied import tied_contrastive_loss

    model.train()
    mem, mask = model.encode_texts(["vitamin in blood", "mouse gene"], 16)
    d_mem, d_mask = model.encode_texts([docs[0].text, docs[1].text], 16)
    loss, _ = tied_contrastive_loss(model, {"q_memory": mem, "q_mask": mask, "d_memory": d_mem, "d_mask": d_mask})
    loss.backward()
    assert model.tied_proj.weight.grad.abs().sum() > 0


def test_residual_weight_keeps_the_text_vectors_near_the_sentence_embedding(tiny_bert):
    """tied.residual_weight: the loss adds weight x mean |h - sentence|^2 over the batch's queries and
    documents; trained from the same start on the same batches, the weighted model's residual ends smaller
    and its text vectors closer to the encoder's embedding."""
    from genir.methods.tied import tied_contrastive_loss

    docs = _docs(16, seed=3)
    queries = [" ".join(d.text.split()[:4]) for d in docs]

    def train(weight: float) -> float:
        torch.manual_seed(0)
        model = TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64,
                                         dropout=0.0, extra={"tied_residual": True, "tied_temperature": 0.05,
                                                             "tied_residual_weight": weight}))
        model.freeze_encoder(True)
        q_mem, q_mask = model.encode_texts(queries, 16)
        d_mem, d_mask = model.encode_texts([d.text for d in docs], 16)
        batch = {"q_memory": q_mem, "q_mask": q_mask, "d_memory": d_mem, "d_mask": d_mask}
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
        for _ in range(30):
            loss, logs = tied_contrastive_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            h = model.first_hidden(d_mem, d_mask)
            residual = (h - model.sentence_vector(d_mem, d_mask)).pow(2).sum(-1).mean()
            if weight:  # the logged penalty is that same mean over queries and documents
                _, logs = tied_contrastive_loss(model, batch)
                h_q = model.first_hidden(q_mem, q_mask) - model.sentence_vector(q_mem, q_mask)
                both = torch.cat([h_q, h - model.sentence_vector(d_mem, d_mask)]).pow(2).sum(-1).mean()
                assert logs["residual"] == pytest.approx(float(both), rel=1e-4)
        return float(residual)

    free = train(0.0)
    held = train(10.0)
    assert free > 0.05
    assert held < 0.2 * free

    # the distillation objective (tied-atomic-distill) carries the same penalty
    from genir.methods.tied import tied_margin_mse_loss

    def margin_loss(weight: float) -> tuple[float, dict]:
        torch.manual_seed(0)
        model = TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64,
                                         dropout=0.0, extra={"tied_residual": True, "tied_residual_weight": weight}))
        torch.nn.init.normal_(model.tied_proj.weight, std=0.1)  # a residual that is not 0 yet
        q_mem, q_mask = model.encode_texts(queries[:4], 16)
        d_mem, d_mask = model.encode_texts([d.text for d in docs[:8]], 16)
        loss, logs = tied_margin_mse_loss(model, {"q_memory": q_mem, "q_mask": q_mask, "d_memory": d_mem,
                                                  "d_mask": d_mask, "margin": torch.ones(4)})
        return float(loss.detach()), logs

    plain, _ = margin_loss(0.0)
    weighted, logs = margin_loss(2.0)
    assert logs["residual"] > 0 and weighted == pytest.approx(plain + 2.0 * logs["residual"], rel=1e-5)


def test_residual_weight_without_the_residual_form_is_refused():
    from genir.methods.tied import TiedSettings, check_settings, model_extra

    with pytest.raises(ValueError, match="tied.residual=true"):  # before any stage runs
        check_settings(None, TiedSettings(residual_weight=1.0))
    assert model_extra(TiedSettings(residual=True, residual_weight=1.0))["tied_residual_weight"] == 1.0


def test_residual_scale_interpolates_between_the_encoder_and_the_trained_model(tiny_bert):
    """tied.residual_scale (search only): every text vector is sentence + scale x residual, for queries and
    documents alike; 0 ranks as the encoder's dense retriever, 1 as the trained model; both modes agree."""
    torch.manual_seed(0)
    model = TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64,
                                     extra={"tied_residual": True})).eval()
    torch.nn.init.normal_(model.tied_proj.weight, std=0.2)  # a trained residual: not 0
    docs = _docs(40, seed=4)
    texts = [d.full_text for d in docs]
    with torch.no_grad():
        mem, mask = model.encode_texts(texts, model.config.doc_max_length)
        sentence = model.sentence_vector(mem, mask).numpy()
        full = model.first_hidden(mem, mask).numpy()

    def searcher(scale: float, mode: str = "dense") -> TiedAtomicSearcher:
        s = TiedAtomicSearcher(model, TiedAtomicIndex(model.tied_dim), mode=mode, residual_scale=scale)
        s.add_documents(docs)
        return s

    for scale in (0.0, 0.5, 1.0):
        dense = searcher(scale)
        np.testing.assert_allclose(dense.index.matrix(), sentence + scale * (full - sentence), rtol=1e-4, atol=1e-5)
        q = dense.encode(list(QUERIES.values()), model.config.query_max_length)
        with torch.no_grad():
            q_mem, q_mask = model.encode_texts(list(QUERIES.values()), model.config.query_max_length)
            q_sentence, q_full = model.sentence_vector(q_mem, q_mask).numpy(), model.first_hidden(q_mem, q_mask).numpy()
        np.testing.assert_allclose(q, q_sentence + scale * (q_full - q_sentence), rtol=1e-4, atol=1e-5)
        generative = searcher(scale, "generative")
        rd, rg = dense.batch_search(QUERIES, 10), generative.batch_search(QUERIES, 10)
        for name in QUERIES:
            np.testing.assert_allclose([h.score for h in rd[name]], [h.score for h in rg[name]], rtol=1e-4, atol=1e-5)
    # the scale changes the ranking (the residual is not 0), so a test above could not pass by ignoring it
    top = {scale: [h.doc_id for h in searcher(scale).batch_search(QUERIES, 10)["a"]] for scale in (0.0, 1.0)}
    assert top[0.0] != top[1.0]


def test_residual_scale_is_a_search_setting_refused_without_the_residual_form():
    from genir.methods import make_settings
    from genir.methods.tied import TiedSettings, check_settings
    from genir.stages import method_fingerprint

    with pytest.raises(ValueError, match="tied.residual=true"):
        check_settings(None, TiedSettings(residual_scale=0.5))
    settings = make_settings()
    settings.tied.residual = True
    before = method_fingerprint(settings, "tied", {})
    assert "tied.residual_scale" not in before.search  # folders made before it stay valid
    settings.tied.residual_scale = 0.5
    after = method_fingerprint(settings, "tied", {})
    # only the search part changes: the trained model is reused, the ranking recomputed
    assert after.train == before.train and after.search["tied.residual_scale"] == 0.5


def test_without_a_query_residual_queries_keep_the_sentence_embedding(tiny_bert):
    """tied.query_residual=false: a query's vector is the encoder's sentence embedding (in training and in
    both search modes), a document's is sentence + residual; the penalty is the documents' mean."""
    from genir.methods.tied import TiedSettings, check_settings, tied_contrastive_loss

    with pytest.raises(ValueError, match="tied.residual=true"):
        check_settings(None, TiedSettings(query_residual=False))
    torch.manual_seed(0)
    model = TiedSeq2Seq(ModelConfig(n_codes=1, backbone=tiny_bert, decoder_heads=2, decoder_ff=64, dropout=0.0,
                                     extra={"tied_residual": True, "tied_query_residual": False,
                                            "tied_residual_weight": 1.0})).eval()
    torch.nn.init.normal_(model.tied_proj.weight, std=0.2)  # a trained residual: not 0
    docs = _docs(40, seed=5)
    texts = list(QUERIES.values())
    with torch.no_grad():
        q_mem, q_mask = model.encode_texts(texts, model.config.query_max_length)
        d_mem, d_mask = model.encode_texts([d.full_text for d in docs], model.config.doc_max_length)
        q_sentence, d_sentence = model.sentence_vector(q_mem, q_mask), model.sentence_vector(d_mem, d_mask)
        d_full = model.first_hidden(d_mem, d_mask)
    assert (d_full - d_sentence).norm(dim=-1).min() > 1e-3  # documents do carry a residual
    for scale in (1.0, 0.5):
        dense = TiedAtomicSearcher(model, TiedAtomicIndex(model.tied_dim), mode="dense", residual_scale=scale)
        dense.add_documents(docs)
        np.testing.assert_allclose(dense.encode(texts, model.config.query_max_length, queries=True),
                                   q_sentence.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dense.index.matrix(), (d_sentence + scale * (d_full - d_sentence)).numpy(),
                                   rtol=1e-4, atol=1e-5)
        generative = TiedAtomicSearcher(model, dense.index, mode="generative", residual_scale=scale)
        rd, rg = dense.batch_search(QUERIES, 10), generative.batch_search(QUERIES, 10)
        for i, name in enumerate(QUERIES):
            expected = torch.topk(q_sentence[i] @ torch.from_numpy(dense.index.matrix()).T, 10).values.numpy()
            np.testing.assert_allclose([h.score for h in rd[name]], expected, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose([h.score for h in rg[name]], expected, rtol=1e-4, atol=1e-5)
    # training: the query side is the sentence embedding; the penalty is the documents' mean squared residual
    model.train()
    batch = {"q_memory": q_mem[:2], "q_mask": q_mask[:2], "d_memory": d_mem[:2], "d_mask": d_mask[:2]}
    loss, logs = tied_contrastive_loss(model, batch)
    with torch.no_grad():
        d_res = (model.first_hidden(d_mem[:2], d_mask[:2]) - d_sentence[:2]).pow(2).sum(-1).mean()
        scores = q_sentence[:2] @ model.first_hidden(d_mem[:2], d_mask[:2]).T / model.config.extra.get(
            "tied_temperature", 1.0)
        expected = torch.nn.functional.cross_entropy(scores, torch.arange(2)) + d_res
    assert logs["residual"] == pytest.approx(float(d_res), rel=1e-4)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4)
