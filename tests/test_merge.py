"""MERGE: RQ-VAE (Eq. 1-2), the relevance losses (Eq. 3-8), batches, de-collision, Eq. 9, Table 3."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genir.docids.rqvae import RQVAE, decollide, distinct_codes_per_level
from genir.docids.schemes import kmeans_centroids
from genir.methods.merge.training import (
    MergeConfig,
    MergeObjective,
    RelevanceBatches,
    align_loss,
    inner_loss,
    outer_loss,
    position_weighted_loss,
    relevance_loss,
)
from genir.models import DocidSeq2Seq, ModelConfig


@pytest.fixture()
def rqvae() -> RQVAE:
    torch.manual_seed(0)
    return RQVAE(16, hidden=(12,), latent_dim=4, levels=3, codes=8, commitment=1.0)


def test_eq1_eq2_residual_quantisation(rqvae):
    x = torch.randn(20, 16)
    out = rqvae(x)
    z = rqvae.latent_encoder(x)
    r, rq, total = z, 0.0, torch.zeros_like(z)
    for level in range(3):
        dist = ((r[:, None, :] - rqvae.codebooks[level][None]) ** 2).sum(-1)
        c = dist.argmin(1)  # c_l = argmin_k ||r_l - e_k||
        assert torch.equal(out["codes"][:, level], c)
        assert torch.allclose(out["residuals"][level], r, atol=1e-6)
        e = rqvae.codebooks[level][c]
        rq = rq + ((r - e) ** 2).mean() * 2  # both terms of Eq. 2 have the value ||r - e||^2 (alpha = 1)
        total = total + e
        r = r - e  # r_{l+1} = r_l - e_{c_l}
    assert torch.allclose(out["rq"], rq, atol=1e-5)
    assert torch.allclose(out["z_hat"], total, atol=1e-5)  # z-hat = sum_l e_{c_l}
    assert torch.allclose(out["recon_loss"], F.mse_loss(rqvae.latent_decoder(total), x), atol=1e-5)  # Eq. 1
    # stop-gradients of Eq. 2: the codebook term moves only the codebook, the commitment term only E
    rqvae.zero_grad()
    out["rq"].backward(retain_graph=True)
    assert rqvae.codebooks.grad.abs().sum() > 0 and rqvae.latent_encoder[0].weight.grad.abs().sum() > 0
    # the reconstruction reaches the encoder through z-hat (straight-through), not the codebooks
    rqvae.zero_grad()
    out["recon_loss"].backward()
    assert rqvae.latent_encoder[0].weight.grad.abs().sum() > 0
    assert rqvae.codebooks.grad is None or rqvae.codebooks.grad.abs().sum() == 0


def test_codebooks_start_from_kmeans_of_the_first_batch(rqvae):
    x = torch.randn(64, 16)
    rqvae.init_codebooks(x, seed=3)
    z = rqvae.latent_encoder(x).detach()
    assert np.allclose(rqvae.codebooks[0].detach().numpy(), kmeans_centroids(z.numpy(), 8, 3), atol=1e-5)
    r1 = z - rqvae.codebooks[0][rqvae.quantize(z)["codes"][:, 0]].detach()
    assert np.allclose(rqvae.codebooks[1].detach().numpy(), kmeans_centroids(r1.numpy(), 8, 4), atol=1e-5)


def test_eq3_eq4_alignment():
    z = torch.randn(6, 4)
    # query 1: grade 2 = rows 0, 1 (the highest: q is their mean), grade 1 = row 3; L = 2 grades
    # query 2: only grade 1 (rows 2, 4, 5): q is their mean, weight 1 / (2 - 1 + 1)
    loss = align_loss(z, [{2: [0, 1], 1: [3]}, {1: [2, 4, 5]}], n_grades=2)
    cos = F.cosine_similarity
    q1, q2 = z[[0, 1]].mean(0), z[[2, 4, 5]].mean(0)
    first = 1.0 * (1 - cos(z[[0, 1]], q1[None])).mean() + 0.5 * (1 - cos(z[3:4], q1[None])).mean()
    second = 0.5 * (1 - cos(z[[2, 4, 5]], q2[None])).mean()
    assert torch.allclose(loss, (first + second) / 2, atol=1e-6)


def test_eq5_outer_infonce_and_eq6_inner_triplet():
    r = torch.randn(6, 4)
    pairs = torch.tensor([[0, 2], [3, 1]])
    rn = F.normalize(r, dim=-1)
    expected = torch.stack([-(torch.log_softmax(rn[a] @ rn.T / 0.7, 0)[p]) for a, p in pairs.tolist()]).mean()
    assert torch.allclose(outer_loss(r, pairs, 0.7), expected, atol=1e-6)
    triplets = torch.tensor([[0, 1, 5], [2, 3, 4]])
    hinge = [max(0.0, 0.2 + float(rn[a] @ rn[n]) - float(rn[a] @ rn[p])) for a, p, n in triplets.tolist()]
    assert inner_loss(r, triplets, 0.2).item() == pytest.approx(np.mean(hinge), abs=1e-6)


def test_eq7_eq8_combination():
    cfg = MergeConfig(levels=3, betas=(1.0, 0.5, 0.25), codes=8)
    res = torch.randn(3, 6, 4)
    pairs, triplets = torch.tensor([[0, 1]]), torch.tensor([[0, 1, 2]])
    rel, _ = relevance_loss(res, pairs, triplets, cfg)
    expected = sum(b * outer_loss(res[level], pairs, 0.7) + (1 - b) * inner_loss(res[level], triplets, 0.2)
                   for level, b in enumerate(cfg.betas)) / 3
    assert torch.allclose(rel, expected, atol=1e-6)
    # Table 2 as MERGE defines it: "w/o L_inner" is beta_l = 1, "w/o L_outer" is beta_l = 0 (the other term at
    # full weight on every level, not kept at its beta share)
    no_inner, _ = relevance_loss(res, pairs, triplets, MergeConfig(levels=3, betas=(1.0, 0.5, 0.25), inner=False))
    assert torch.allclose(no_inner, sum(outer_loss(res[level], pairs, 0.7) for level in range(3)) / 3, atol=1e-6)
    no_outer, _ = relevance_loss(res, pairs, triplets, MergeConfig(levels=3, betas=(1.0, 0.5, 0.25), outer=False))
    assert torch.allclose(no_outer, sum(inner_loss(res[level], triplets, 0.2) for level in range(3)) / 3, atol=1e-6)
    torch.manual_seed(0)
    model = RQVAE(8, hidden=(8,), latent_dim=4, levels=3, codes=4)
    batch = {"embeddings": torch.randn(6, 8), "pairs": pairs, "triplets": triplets, "queries": [{1: [0, 1], 0: []}]}
    batch["queries"] = [{1: [0, 1]}]
    merge_loss, _ = MergeObjective(cfg, n_grades=1)(model, batch)
    vanilla, _ = MergeObjective(MergeConfig(levels=3, betas=(1.0, 0.5, 0.25), relevance=False), 1)(model, batch)
    out = model(batch["embeddings"])
    rel, _ = relevance_loss(out["residuals"], pairs, triplets, cfg)
    al = align_loss(out["z"], batch["queries"], 1)
    assert torch.allclose(vanilla, out["loss"], atol=1e-6)  # L_RQ-VAE = L_recon + L_rq
    assert torch.allclose(merge_loss, out["loss"] + 0.01 * al + 0.001 * rel, atol=1e-6)  # Eq. 8


def test_batches_pair_each_document_with_a_relevant_partner_and_grade_ordered_triplets():
    qrels = {"q1": {0: 2, 1: 2, 2: 1, 3: 0}, "q2": {4: 1, 5: 1}}
    data = RelevanceBatches(np.random.default_rng(0).normal(size=(8, 4)), qrels, seed=1)
    for _ in range(10):
        batch = data.collate([0, 2, 4, 6])
        order = [int(np.where((data.embeddings == e).all(1))[0][0]) for e in batch["embeddings"]]
        assert order[:4] == [0, 2, 4, 6]  # the batch's own documents first, partners appended
        for a, p in batch["pairs"].tolist():
            da, dp = order[a], order[p]
            assert da != dp and any(qrels[q].get(da, 0) > 0 and qrels[q].get(dp, 0) > 0 for q in qrels)
        for a, p, n in batch["triplets"].tolist():
            ga, gp, gn = (qrels["q1"][order[i]] for i in (a, p, n))  # only q1 has two grades
            assert ga == gp and ga > gn
    assert 6 not in data.by_doc  # a document without judgements has no partner


def test_decollide_makes_docids_unique_by_sinkhorn_and_reports_it():
    rng = np.random.default_rng(0)
    codes = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 3], [1, 0, 0]])
    book = rng.normal(size=(4, 3))
    last = rng.normal(size=(5, 3))
    out, stats = decollide(codes, last, book)
    assert len({tuple(c) for c in out.tolist()}) == 5
    assert stats == {"collisions_before": 2, "reassigned": 2, "extended": 0}
    assert (out[:, :2] == codes[:, :2]).all() and (out[3:] == codes[3:]).all()  # only the last level moves
    keep = int(np.argmin(((last[:3] - book[2]) ** 2).sum(1)))
    assert out[keep, 2] == 2  # the colliding document nearest to the shared code keeps it
    assert set(out[:3, 2].tolist()) == {2, 0, 1}  # the others took the prefix's free codes (3 is in use)
    crowded, st = decollide(np.zeros((6, 2), dtype=int), rng.normal(size=(6, 3)), rng.normal(size=(3, 3)))
    assert st["extended"] == 3 and crowded.shape[1] == 3 and len({tuple(c) for c in crowded.tolist()}) == 6


def test_eq9_position_weights(tiny_bert):
    torch.manual_seed(0)
    model = DocidSeq2Seq(ModelConfig(n_codes=10, backbone=tiny_bert, max_docid_length=4, dropout=0.0)).eval()
    mem, mask = model.encode_texts(["a query", "another longer query"], 16)
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    batch = {"memory": mem.detach(), "mask": mask, "targets": targets}
    loss, _ = position_weighted_loss(model, batch)
    logp = F.log_softmax(model(mem, mask, targets), -1)
    nll = -logp.gather(-1, targets[..., None])[..., 0]
    w = 1 / torch.sqrt(torch.arange(1, 5).float())
    assert torch.allclose(loss, (nll * w).sum(1).mean(), atol=1e-5)
    plain, _ = position_weighted_loss(model, batch, weighted=False)
    assert torch.allclose(plain, nll.sum(1).mean(), atol=1e-5)


def test_retrieval_token_is_one_new_token_and_survives_save_load(tiny_bert, tmp_path):
    cfg = ModelConfig(n_codes=10, backbone=tiny_bert, max_docid_length=4, extra={"query_prefix": "<retrieval>"})
    model = DocidSeq2Seq(cfg)
    ids = model.tokenize(model.query_texts(["vitamin d"]), 16)["input_ids"][0].tolist()
    token = model.tokenizer.convert_tokens_to_ids("<retrieval>")
    assert ids[1] == token and token == model.encoder.get_input_embeddings().weight.shape[0] - 1
    emb = model.encoder.get_input_embeddings().weight
    assert torch.allclose(emb[token], emb[:-1].mean(0))  # deterministic start: cached states agree
    model.save(tmp_path / "m")
    again = DocidSeq2Seq.load(tmp_path / "m")
    assert again.tokenize(again.query_texts(["vitamin d"]), 16)["input_ids"][0].tolist() == ids
    with torch.no_grad():
        a, _ = model.eval().encode_texts(model.query_texts(["vitamin d"]))
        b, _ = again.encode_texts(again.query_texts(["vitamin d"]))
    assert torch.allclose(a, b, atol=1e-5)
    plain = DocidSeq2Seq(ModelConfig(n_codes=10, backbone=tiny_bert, max_docid_length=4))
    assert plain.query_texts(["x"]) == ["x"]


def test_table3_distinct_codes_per_level():
    codes = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 4], [1, 5, -1]])
    index = {f"d{i}": i for i in range(4)}
    qrels = {"a": {"d0": 1, "d1": 2, "d2": 1}, "b": {"d2": 1, "d3": 1}, "c": {"d0": 1, "d3": 0}}
    # a: level 0 {0}, level 1 {1, 2}, level 2 {2, 3, 4}; b: {0, 1}, {2, 5}, {4}; c has one relevant document
    assert distinct_codes_per_level(codes, index, qrels) == [1.5, 2.0, 2.0]
