"""GenRet: every equation against a direct computation, progressive training, diverse clustering."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genir.docids import DocIdTable, PrefixTree
from genir.docids.balance import constrained_kmeans, diversity, largest_share, sinkhorn
from genir.methods.genret import GenRetConfig, GenRetData, GenRetObjective, ProgressiveTrainer
from genir.methods.genret.model import CodebookSeq2Seq
from genir.methods.genret.objective import straight_through
from genir.models import DocidSeq2Seq, ModelConfig
from genir.search.beam import beam_search, sequence_scores
from genir.training.data import EncodedTexts, TextInputs

K, M = 6, 2


@pytest.fixture(scope="module")
def model(tiny_bert) -> CodebookSeq2Seq:
    torch.manual_seed(0)
    return CodebookSeq2Seq(ModelConfig(n_codes=K, backbone=tiny_bert, max_docid_length=M, dropout=0.0)).eval()


def _memory(model, texts):
    with torch.no_grad():
        return model.encode_texts(texts, 16)


def test_eq3_eq4_step_logits_are_codebook_lookups(model):
    mem, mask = _memory(model, ["a query about cells", "protein folding", "x"])
    prefix = torch.tensor([[1], [4], [0]])
    hidden = model.hidden(mem, mask, prefix)  # Eq. 2: d_1, d_2
    logits = model(mem, mask, torch.cat([prefix, torch.zeros_like(prefix)], 1))
    for t in range(M):  # Eq. 3: d_t . E_t^T, each step its own codebook; no end-of-docid
        assert torch.allclose(logits[:, t, :K], hidden[:, t] @ model.codebooks[t].T, atol=1e-5)
        assert torch.isinf(logits[:, t, K]).all()
    # incremental decoding (beam search) gives the same logits as teacher forcing
    state = model.start(mem, mask)
    step1, state = model.step(state, torch.full((3,), model.bos))
    step2, _ = model.step(state, prefix[:, 0])
    assert torch.allclose(step1, logits[:, 0], atol=1e-5) and torch.allclose(step2, logits[:, 1], atol=1e-5)
    # Eq. 4: z_t = argmax, fed back step by step
    codes = model.assign_codes(mem, mask)
    z1 = (model.hidden(mem, mask, codes[:, :0])[:, 0] @ model.codebooks[0].T).argmax(-1)
    z2 = (model.hidden(mem, mask, z1[:, None])[:, 1] @ model.codebooks[1].T).argmax(-1)
    assert torch.equal(codes, torch.stack([z1, z2], 1))
    # a fixed prefix is kept and only later steps are decoded
    assert torch.equal(model.assign_codes(mem, mask, prefix=prefix)[:, 0], prefix[:, 0])


def test_beam_search_over_learned_docids_equals_brute_force(model):
    codes = np.array([[a, b] for a in range(K) for b in range(K)][::3])
    table = DocIdTable([f"d{i}" for i in range(len(codes))], codes, K, "genret")
    trie = PrefixTree(table)
    mem, mask = _memory(model, ["first query", "second one here"])
    nodes, scores = beam_search(model, trie, mem, mask, beam=len(codes))
    brute = sequence_scores(model, trie, mem, mask)
    for q in range(2):
        got = [trie.leaf_docs[n][0] for n in nodes[q].tolist()]
        assert np.allclose(scores[q].numpy(), brute[q, got].numpy(), atol=1e-4)
        assert np.allclose(np.sort(scores[q].numpy())[::-1], np.sort(brute[q].numpy())[::-1], atol=1e-4)


def test_save_and_load_rebuild_the_codebook_model(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = DocidSeq2Seq.load(tmp_path / "m")
    assert isinstance(loaded, CodebookSeq2Seq) and loaded.n_steps == M
    mem, mask = _memory(model, ["same input"])
    assert torch.equal(loaded.assign_codes(mem, mask), model.assign_codes(mem, mask))


def test_sinkhorn_balances_and_reassigns():
    torch.manual_seed(0)
    b, k = 32, 8
    shared = torch.randn(1, k) * 5  # every row prefers the same codes: argmax collapses
    h = shared + 0.1 * torch.randn(b, k)
    assert len(torch.unique(h.argmax(1))) <= 2
    log_h = sinkhorn(h, epsilon=1.0, iterations=100)
    plan = log_h.exp()
    assert torch.allclose(plan.sum(1), torch.full((b,), 1 / b), atol=1e-6)  # H* = Diag(u) exp(H/eps) Diag(v)
    assert torch.allclose(plan.sum(0), torch.full((k,), 1 / k), atol=1e-3)
    # the plan is exp(H / eps) rescaled by rows and columns: log H* - H/eps is a sum u_i + v_j
    resid = log_h.double() - h.double()
    u, v = resid[:, :1], resid[:1, :] - resid[0, 0]
    assert torch.allclose(resid, u + v, atol=1e-4)
    codes = log_h.argmax(1)
    counts = np.bincount(codes.numpy(), minlength=k)
    assert (counts > 0).all() and counts.max() <= 2 * b // k  # re-assignment spreads the batch


def test_straight_through_gradients_eq8():
    torch.manual_seed(0)
    book = torch.randn(5, 4, requires_grad=True)
    d = torch.randn(3, 4, requires_grad=True)
    codes = torch.tensor([2, 2, 4])
    z = straight_through(book, d, codes)
    assert torch.allclose(z, book[codes])  # the value is the codebook vector
    w = torch.randn(3, 4)
    (z * w).sum().backward()  # dL/dz = w
    assert torch.allclose(d.grad, w)  # dL/dd_T := dL/dz_T
    expect = torch.zeros(5, 4)
    expect[2] = w[0] + w[1]
    expect[4] = w[2]
    assert torch.allclose(book.grad, expect)  # dL/de_{T,j} := 1[z_T = j] dL/dz_T


def _toy_data(model, n_docs: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = "cell protein gene virus tumor brain heart lung blood immune drug dose".split()
    docs = [" ".join(rng.choice(words, 8)) for _ in range(n_docs)]
    queries = [" ".join(rng.choice(words, 3)) for _ in range(2 * n_docs)]
    texts = docs + queries
    enc = EncodedTexts(model, texts, 16, show_progress=False)
    doc_text = {i: i for i in range(n_docs)}
    qs = {i: [n_docs + 2 * i, n_docs + 2 * i + 1] for i in range(n_docs)}
    return GenRetData(TextInputs(texts, 16, model, enc), doc_text, qs, seed)


def test_reconstruction_loss_eq6_over_same_prefix_documents(model):
    data = _toy_data(model, 12)
    codes = torch.full((12, M), -1)
    codes[:, 0] = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3])
    obj = GenRetObjective(1, codes, data, GenRetConfig(codes=K, batch_size=4))  # step T = 2
    torch.manual_seed(1)
    obj.bank = torch.randn(12, model.decoder.d_model)
    idx = torch.tensor([0, 4, 7])
    z, d_sg = torch.randn(3, model.decoder.d_model), torch.randn(3, model.decoder.d_model)
    got = obj.reconstruction_loss(z, d_sg, idx)
    expect = []
    for i, doc in enumerate(idx.tolist()):
        same = [j for j in range(12) if codes[j, 0] == codes[doc, 0]]  # S(z_<T)
        scores = {j: float(z[i] @ obj.bank[j]) for j in same}  # the target's own row included
        expect.append(-scores[doc] + math.log(sum(math.exp(s) for s in scores.values())))
    assert got.item() == pytest.approx(float(np.mean(expect)), rel=1e-5)
    # "batch": S(z_<T) is the batch's documents with the same prefix
    obj.cfg.rec_set = "batch"
    idx = torch.tensor([0, 1, 4])
    got = obj.reconstruction_loss(z, d_sg, idx)
    s01 = z[:2] @ d_sg[:2].T
    expect = [F.cross_entropy(s01[0:1], torch.tensor([0])), F.cross_entropy(s01[1:2], torch.tensor([1])), 0.0]
    assert got.item() == pytest.approx(float(sum(expect)) / 3, rel=1e-5)


def test_loss_eq11_is_rec_plus_com_plus_ret(model):
    data = _toy_data(model, 8)
    codes = torch.full((8, M), -1)
    codes[:, 0] = torch.arange(8) % K
    cfg = GenRetConfig(codes=K, batch_size=8, rec_set="batch", reassign=False)
    obj = GenRetObjective(1, codes, data, cfg)
    torch.manual_seed(0)
    batch = data.collate(list(range(8)))
    loss, logs = obj(model, batch)
    assert loss.item() == pytest.approx(logs["rec"] + logs["com"] + logs["ret"], rel=1e-4)
    # Eq. 9 and 10 by hand: commitment over t <= T for the document, generation over t <= T for the query
    prefix = codes[:, :1]
    d_h = model.hidden(batch["d_memory"], batch["d_mask"], prefix)
    q_h = model.hidden(batch["q_memory"], batch["q_mask"], prefix)
    z2 = (d_h[:, 1] @ model.codebooks[1].T).argmax(-1)  # no re-assignment: plain argmax (Eq. 4)
    targets = torch.cat([prefix, z2[:, None]], 1)
    com = sum(F.cross_entropy(d_h[:, t] @ model.codebooks[t].T, targets[:, t]) for t in range(2))
    ret = F.cross_entropy(q_h[:, 1] @ d_h[:, 1].T, torch.arange(8)) + sum(
        F.cross_entropy(q_h[:, t] @ model.codebooks[t].T, targets[:, t]) for t in range(2))
    assert logs["com"] == pytest.approx(com.item(), rel=1e-4)
    assert logs["ret"] == pytest.approx(ret.item(), rel=1e-4)


def test_progressive_step_keeps_earlier_codes_and_codebooks(tiny_bert, tmp_path):
    torch.manual_seed(0)
    model = CodebookSeq2Seq(ModelConfig(n_codes=4, backbone=tiny_bert, max_docid_length=2))
    model.freeze_encoder(True)
    data = _toy_data(model, 24)
    cfg = GenRetConfig(codes=4, length=2, epochs=2, warmup_epochs=1, batch_size=8, lr=5e-3)
    trainer = ProgressiveTrainer(model, data, 24, cfg, tmp_path / "p", show_progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(steps=1)
    codes_after_1 = trainer.codes[:, 0].clone()
    book1 = model.codebooks[0].detach().clone()
    book2 = model.codebooks[1].detach().clone()
    encoder = [p.detach().clone() for p in model.encoder.parameters()]
    assert (codes_after_1 >= 0).all() and (trainer.codes[:, 1] < 0).all()
    # step 1 is stored (weights, codes): its phases' checkpoints are removed, the progress stays
    assert not [p for p in (tmp_path / "p").rglob("step-*") if p.is_dir()]
    assert (tmp_path / "p" / "progress.json").exists() and (tmp_path / "p" / "codes.npy").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()  # resumes after step 1 and runs step 2
    assert torch.equal(trainer.codes[:, 0], codes_after_1)  # z_<T fixed
    assert torch.equal(model.codebooks[0].detach(), book1)  # E_<T frozen
    assert not torch.equal(model.codebooks[1].detach(), book2)  # E_T learned
    assert all(torch.equal(a, b.detach()) for a, b in zip(encoder, model.encoder.parameters(), strict=True))
    assert (trainer.codes[:, 1] >= 0).all()
    assert [e["step"] for e in trainer.log] == [1, 2]
    # each step's logged diversity is GenRet Sec. 5.3's d of that step's codes
    assert [e["diversity"] for e in trainer.log] == pytest.approx(
        [diversity(trainer.codes[data.docs, t].numpy(), 4) for t in range(2)])


def test_diversity_metric_and_collapse_warning(tiny_bert, tmp_path):
    assert diversity(np.arange(512) % 8, 8) == pytest.approx(1.0)
    assert diversity(np.zeros(100, dtype=int), 8) == pytest.approx(1 / 8)  # all on one docid
    assert diversity(np.array([0, 0, 1, 1]), 4) == pytest.approx(0.5)
    assert largest_share(np.array([[1, 2], [1, 2], [1, 3], [0, 0]])) == 0.5
    model = CodebookSeq2Seq(ModelConfig(n_codes=4, backbone=tiny_bert, max_docid_length=1))
    data = _toy_data(model, 8)
    trainer = ProgressiveTrainer(model, data, 8, GenRetConfig(codes=4), tmp_path, show_progress=False)
    trainer.codes[:, 0] = 0
    with pytest.warns(UserWarning, match="collapsed"):
        stats = trainer.step_stats(0)
    assert stats["collapsed"] and stats["largest_docid_share"] == 1.0


def test_constrained_kmeans_is_balanced():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (180, 4)), rng.normal(5, 0.1, (20, 4))])  # one dense blob
    centroids, labels = constrained_kmeans(x, 10, slack=2.0)
    sizes = np.bincount(labels, minlength=10)
    assert centroids.shape == (10, 4)
    assert sizes.min() >= 10 and sizes.max() <= 40  # n/(k*slack) .. n*slack/k


def test_docid_length_grows_with_the_corpus():
    cfg = GenRetConfig(codes=512)
    assert cfg.docid_length(5_183) == 2 and cfg.docid_length(109_739) == 3  # NQ320k: M = 3 (the paper's)
    assert GenRetConfig(codes=512, length=4).docid_length(10) == 4


def test_sinkhorn_assignment_spreads_each_prefix_group(tiny_bert, tmp_path):
    torch.manual_seed(0)
    model = CodebookSeq2Seq(ModelConfig(n_codes=8, backbone=tiny_bert, max_docid_length=2)).eval()
    data = _toy_data(model, 16)
    trainer = ProgressiveTrainer(model, data, 16, GenRetConfig(codes=8, assign="sinkhorn"), tmp_path,
                                 show_progress=False)
    trainer.codes[:, 0] = torch.arange(16) % 2  # two prefix groups of 8 documents
    plain = model.step_logits(trainer.doc_vectors(1), 1).argmax(-1)  # Eq. 4 alone
    trainer.assign(1)
    for g in range(2):
        in_group = trainer.codes[:, 0] == g
        col = trainer.codes[in_group, 1]
        assert len(torch.unique(col)) >= 4 and len(torch.unique(col)) > len(torch.unique(plain[in_group]))
    with pytest.raises(ValueError, match="assign"):
        GenRetConfig(assign="greedy")


def test_documents_sharing_a_docid_come_back_by_q_t_dot_d_t(model):
    """Colliding documents are ranked by the score GenRet trains for them (Eq. 10: q_T . d_T, q_T given the
    shared prefix z_<T), not in corpus order."""
    from genir.docids import DocIdTable
    from genir.search.generative import GenerativeSearcher, StateOrderedSearcher

    table = DocIdTable(["a", "b", "c"], [[1, 2], [1, 2], [3, 0]], K, "genret")  # a and b collide
    query = "protein folding in cells"
    with torch.no_grad():
        mem, mask = model.encode_texts([query])
        prefix = torch.tensor([table.sequence(0)[:-1]])
        q_last = model.hidden(mem, mask, prefix)[0, -1]
    states = torch.stack([-q_last, q_last, torch.zeros_like(q_last)]).numpy()  # b scores above a
    ordered = StateOrderedSearcher(model, table, states, beam=10)
    hits = [h.doc_id for h in ordered.search(query, 10)]
    assert hits.index("b") < hits.index("a")
    plain = [h.doc_id for h in GenerativeSearcher(model, table, beam=10).search(query, 10)]
    assert plain.index("a") < plain.index("b")  # corpus order without it
    flipped = [h.doc_id for h in StateOrderedSearcher(model, table, -states, beam=10).search(query, 10)]
    assert flipped.index("a") < flipped.index("b")


def test_shared_docids_of_a_whole_batch_are_ordered_as_one_at_a_time(model):
    """The batch's colliding groups are ordered with the states the beam search computed for their beams (no
    decoder pass): every query's hits equal those of ordering each group alone by q_T . d_T (q_T from a
    teacher-forced pass over the query's own states given the group's prefix)."""
    import numpy as np

    from genir.docids import DocIdTable
    from genir.search.generative import StateOrderedSearcher

    rng = np.random.default_rng(0)
    codes = [[int(a), int(b)] for a, b in rng.integers(0, 3, size=(24, 2))]  # 9 docids for 24 documents
    table = DocIdTable([f"d{i}" for i in range(24)], codes, K, "genret")
    states = rng.standard_normal((24, model.decoder.d_model)).astype(np.float32)
    queries = {f"q{i}": t for i, t in enumerate(["protein folding in cells", "cells", "immune response of mice",
                                                 "a longer query about gene expression in the brain"])}
    searcher = StateOrderedSearcher(model, table, states, beam=10, batch_size=4)
    passes = []
    model.hidden = lambda *args: passes.append(args) or type(model).hidden(model, *args)
    try:
        got = searcher.batch_search(queries, 24)
    finally:
        del model.hidden
    assert not passes  # q_T is the beam search's own last state of each group's beam: no decoder pass for ties
    for qid, text in queries.items():
        with torch.no_grad():
            mem, mask = model.encode_texts([text])
        want, seen = [], set()
        for hit in got[qid]:
            code = tuple(table.sequence(table.doc_ids.index(hit.doc_id)))
            if code in seen:
                continue
            seen.add(code)
            group = [i for i in range(24) if tuple(table.sequence(i)) == code]
            with torch.no_grad():
                q_last = model.hidden(mem, mask, torch.tensor([list(code[:-1])]))[0, -1]
            scores = torch.as_tensor(states[group]) @ q_last
            want += [f"d{group[i]}" for i in torch.argsort(-scores, stable=True).tolist()]
        assert [h.doc_id for h in got[qid]] == want, qid
        assert any(len([h for h in got[qid] if h.score == s.score]) > 1 for s in got[qid])  # ties were there


def test_the_corpus_bank_refreshes_once_per_epoch_under_several_processes(model, monkeypatch):
    """A step takes batch x N examples under N processes, so an epoch is 1/N as many calls in each process:
    the bank's once-per-epoch refresh counts calls per process (it refreshed every N epochs before)."""
    import genir.methods.genret.objective as objective

    data = _toy_data(model, 16)
    codes = torch.zeros(16, 2, dtype=torch.long)
    one = GenRetObjective(1, codes, data, GenRetConfig(codes=4, batch_size=4)).refresh_every
    monkeypatch.setattr(objective, "world", lambda: 2)
    two = GenRetObjective(1, codes, data, GenRetConfig(codes=4, batch_size=4)).refresh_every
    assert one == math.ceil(len(data) / 4) and two == math.ceil(len(data) / 8)
