"""How much of the dense ranking a docid's geometry keeps, before any retriever is trained.

A structured docid is a path of codes; the best a retriever can do from the codes alone is to score a
document by the part of the dense space its path stands for. This bench scores the queries of one split by
the dense embeddings (exact) and by what a docid keeps of them:

- residual k-means straight on the dense embeddings (RIPOR's docids, an RQ without an auto-encoder),
  q . sum_l C_l[c_l] after 1..m levels of K codes;
- with ``--run-dir`` holding a trained ``rqvae`` or ``merge`` stage: MERGE's RQ-VAE (an MLP auto-encoder,
  MERGE Sec. 3.1.1), queries and documents through its encoder E, scored in its latent (dot, -L2, cosine,
  with the documents' latents unquantised and quantised), and q . D(z-hat_d), the decoder's reconstruction.

Run on queries no model of the folder saw (a ``--train-split ''`` folder's training queries, or a held-out
split), it says how much of the dense ranking is left to be learned back by the retriever:

    GENIR_DATASETS=../shared/datasets python bench/docid_geometry.py --dataset scifact --split train \
        --run-dir runs/scifact-noq-rqvae --method rqvae
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from genir.data import load_dataset
from genir.evaluation.metrics import evaluate
from genir.search.base import Hit
from genir.search.dense import load_sentence_encoder


def ranked(scores: np.ndarray, qids: list[str], doc_ids: list[str], k: int = 100) -> dict[str, list[Hit]]:
    top = np.argsort(-scores, 1)[:, :k]
    return {q: [Hit(doc_ids[j], float(scores[i, j])) for j in top[i]] for i, q in enumerate(qids)}


def residual_kmeans(x: np.ndarray, levels: int, codes: int, seed: int = 0) -> list[np.ndarray]:
    """The approximation of ``x`` after each level of residual k-means (faiss), coarse to fine."""
    import faiss

    residual, approx, out = x.copy(), np.zeros_like(x), []
    for level in range(levels):
        km = faiss.Kmeans(x.shape[1], codes, niter=25, seed=seed + level, verbose=False,
                          min_points_per_centroid=1)
        km.train(residual)
        chosen = km.centroids[km.index.search(residual, 1)[1][:, 0]]
        approx, residual = approx + chosen, residual - chosen
        out.append(approx.copy())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", default="train", help="the queries scored (none a model of --run-dir saw)")
    ap.add_argument("--run-dir", type=Path, default=None, help="a run folder: its dense embeddings and RQ-VAE")
    ap.add_argument("--method", default="rqvae", help="the stage of --run-dir holding the RQ-VAE")
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--codes", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()

    coll = load_dataset(args.dataset, args.data_dir)
    qrels, doc_ids = coll.qrels_for(args.split), coll.doc_ids
    queries = coll.split_queries(args.split)
    qids = list(queries)
    encoder = load_sentence_encoder(None)
    embeddings = args.run_dir / "doc_embeddings.npy" if args.run_dir else None
    docs = (np.load(embeddings) if embeddings and embeddings.exists() else
            encoder.encode([d.full_text for d in coll.corpus.values()], normalize_embeddings=True))
    docs = docs.astype(np.float32)
    q = encoder.encode([queries[i] for i in qids], normalize_embeddings=True).astype(np.float32)

    # a query that is a document of the corpus (ArguAna) loses its own id from its ranking, as genir's run and
    # BEIR's ignore_identical_ids do (genir.workspace, the "auto" rule: same id, same text)
    row_of = {d: j for j, d in enumerate(doc_ids)}
    own = [(i, row_of[x]) for i, x in enumerate(qids) if x in coll.corpus and queries[x].strip() in
           (coll.corpus[x].text.strip(), coll.corpus[x].full_text.strip())]
    rows = []

    def row(name: str, scores: np.ndarray) -> None:
        for i, j in own:
            scores[i, j] = -np.inf
        m = evaluate(ranked(scores, qids, doc_ids), qrels)["full"]
        rows.append({"scores": name, "nDCG@10": m["nDCG@10"], "R@100": m["R@100"], "queries": m["n"],
                     "own_ids_dropped": len(own)})
        print(f"{name:58s} nDCG@10 {m['nDCG@10']:.4f}  R@100 {m['R@100']:.4f}", flush=True)

    row("dense, exact", q @ docs.T)
    for level, approx in enumerate(residual_kmeans(docs, args.levels, args.codes), 1):
        row(f"q . residual k-means after {level} level(s) of {args.codes}", q @ approx.T)

    quantizer = args.run_dir / args.method / "rqvae" / "quantizer" if args.run_dir else None
    if quantizer and (quantizer / "quantizer.json").exists():
        from genir.docids.rqvae import load_quantizer

        model, mean, std = load_quantizer(quantizer)
        std = np.where(std < 1e-6, 1.0, std)  # as the docids were made (genir.methods.merge)
        with torch.no_grad():
            z_d = model.latent_encoder(torch.from_numpy((docs - mean) / std))
            z_q = model.latent_encoder(torch.from_numpy((q - mean) / std)).numpy()
            z_hat = model.quantize(z_d)["z_hat"]
            rebuilt = model.latent_decoder(z_hat).numpy() * std + mean
        z_d, z_hat = z_d.numpy(), z_hat.numpy()
        unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
        row("RQ-VAE latent, dot", z_q @ z_d.T)
        row("RQ-VAE latent, -L2", -((z_q[:, None] - z_d[None]) ** 2).sum(-1))
        row("RQ-VAE quantised latent, -L2", -((z_q[:, None] - z_hat[None]) ** 2).sum(-1))
        row("RQ-VAE quantised latent, cosine", unit(z_q) @ unit(z_hat).T)
        row("q . D(quantised latent), the reconstruction", q @ unit(rebuilt).T)
    if args.out:
        args.out.write_text(json.dumps({"dataset": args.dataset, "split": args.split, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
