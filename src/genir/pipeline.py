"""``genir run``: train, index, search and evaluate, then write a report folder.

Every stage writes its outputs atomically and is skipped when they already exist, so a killed run
started again with the same ``--out`` resumes (training itself resumes from its last checkpoint).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from genir.data import DocAsQuery, load_dataset, load_pseudo_queries, seen_unseen
from genir.data.collection import Collection
from genir.docids import DocIdTable, PrefixTree
from genir.evaluation.metrics import evaluate
from genir.evaluation.report import write_report
from genir.evaluation.trec import write_run
from genir.methods import MethodContext, get_method
from genir.search.base import Searcher, timed_search


@dataclass
class RunConfig:
    dataset: str = "scifact"
    data_dir: str | None = None
    qrels_dir: str = "qrels"
    train_split: str | None = "train"
    test_split: str = "test"
    methods: list[str] = field(default_factory=lambda: ["dsi-semantic", "dsi-atomic", "genret"])
    baselines: list[str] = field(default_factory=lambda: ["bm25", "dense"])
    out: str | None = None
    # model
    backbone: str = "minilm"
    encoder: str = "frozen"  # frozen (cached encoder states) | full (fine-tune the encoder)
    decoder_layers: int = 2
    doc_max_length: int = 64
    query_max_length: int = 64
    # docids and indexing data
    semantic_c: int = 32
    pseudo_queries: str = "docasquery"  # docasquery | a TSV/JSONL file | doc2query:<model name or path>
    span_words: int = 64
    random_spans: int = 1
    doc2query_n: int = 5
    # training
    epochs: float = 30
    batch_size: int = 128
    lr: float = 1e-3
    encoder_lr: float = 5e-5
    seed: int = 0
    # search and evaluation
    beam: int = 100
    k: int = 100
    search_batch_size: int = 16
    dense_model: str | None = None
    max_test_queries: int | None = None
    # tuning: hold out this share of the training queries, train without them and evaluate on them
    # (the test split is not touched); choose hyper-parameters this way, never on test queries
    holdout: float = 0.0
    # new documents: hold this share of the corpus out of all training (no indexing or query examples);
    # the report adds a "new-docs" subset: test queries with a relevant document among them
    new_docs: float = 0.0
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    # tied-atomic
    tied_mode: str = "generative"  # generative (docid vectors as the output layer) | dense (faiss)
    tied_negatives: int = 3  # BM25 negatives per query (plus in-batch negatives)
    tied_negative_depth: int = 30  # negatives are sampled from BM25's top-k
    # dense-trained baseline: the dense encoder fine-tuned (all weights) on the training queries
    dense_epochs: float = 1
    dense_batch_size: int = 16
    dense_train_max_length: int = 128
    teacher_scores: str | None = None  # tied-atomic-distill: TSV query_id, doc_id, score (or a TREC run)
    # decoder 2 x 256 wide, FFN 512: chosen on held-out SciFact training queries (--holdout 0.2) for
    # quality at beam 100 within half of dense search's speed (see README, "Choosing the decoder")
    decoder_dim: int | None = 256
    decoder_ff: int | None = 512
    # genret (see genir.training.genret.GenRetConfig)
    genret_codes: int = 512  # K
    genret_length: int | None = None  # M; default: smallest M with K^M >= 10 x documents
    genret_epochs: float = 30  # per progressive step
    genret_warmup_epochs: float = 3
    # seq2seq on the final docids (the authors' "fit" stage; 0 = off); None = --epochs, the budget the DSI
    # recipes (and genret-nolearn) train their retriever with
    genret_fit_epochs: float | None = None
    genret_reassign: bool = True  # ablation switch: docid re-assignment (Sinkhorn)
    genret_diverse_init: bool = True  # ablation switch: warm-up + constrained k-means codebook init
    genret_rec_set: str = "bank"  # S(z_<t) of Eq. 6: whole-corpus bank or the batch
    genret_lr: float = 5e-4  # GenRet Sec. 4.4
    # glen (see genir.training.glen.GlenConfig)
    glen_length: int = 3
    glen_keyword_epochs: float = 30
    glen_refine_epochs: float = 10
    glen_negatives: int = 8
    glen_negative_mode: str = "prefix"
    glen_feed: str = "hidden"
    glen_tie_break: str = "cosine"
    glen_lr: float = 1e-4
    glen_batch_size: int = 32
    glen_soft_scale: float = 1.0  # scale of d_t . E^T in Eq. 6's soft identifier (authors' code: m^-0.5)
    genret_assign: str = "argmax"  # corpus docids after each step: argmax (Eq. 4) or sinkhorn (per prefix)
    # merge / rqvae (see genir.training.merge.MergeConfig); the retriever trains --epochs at --lr like DSI
    merge_levels: int = 4
    merge_codes: int = 256
    merge_epochs: float = 300
    merge_batch_size: int = 2048
    merge_lr: float = 1e-3
    merge_lambda_align: float = 0.01
    merge_lambda_rel: float = 0.001
    merge_temperature: float = 0.7
    merge_margin: float = 0.2
    merge_align: bool = True  # ablation switches (MERGE Table 2)
    merge_outer: bool = True
    merge_inner: bool = True
    merge_position_weight: bool = True
    merge_decollide: bool = True

    def genret(self):
        from genir.training.genret import GenRetConfig

        return GenRetConfig(codes=self.genret_codes, length=self.genret_length, epochs=self.genret_epochs,
                            warmup_epochs=self.genret_warmup_epochs,
                            fit_epochs=self.epochs if self.genret_fit_epochs is None else self.genret_fit_epochs,
                            batch_size=self.batch_size, lr=self.genret_lr,
                            reassign=self.genret_reassign, diverse_init=self.genret_diverse_init,
                            rec_set=self.genret_rec_set, assign=self.genret_assign, seed=self.seed)

    def glen(self):
        from genir.training.glen import GlenConfig

        return GlenConfig(length=self.glen_length, keyword_epochs=self.glen_keyword_epochs,
                          refine_epochs=self.glen_refine_epochs, negatives=self.glen_negatives,
                          negative_mode=self.glen_negative_mode, batch_size=self.glen_batch_size, lr=self.glen_lr,
                          feed=self.glen_feed, tie_break=self.glen_tie_break, soft_scale=self.glen_soft_scale,
                          seed=self.seed)

    def merge(self, relevance: bool = True):
        from genir.training.merge import MergeConfig

        betas = (1.0, 0.75, 0.5, 0.25) if self.merge_levels == 4 else tuple(
            float(b) for b in np.linspace(1.0, 0.25, self.merge_levels))
        return MergeConfig(levels=self.merge_levels, codes=self.merge_codes, epochs=self.merge_epochs,
                           batch_size=self.merge_batch_size, lr=self.merge_lr, lambda_align=self.merge_lambda_align,
                           lambda_rel=self.merge_lambda_rel, betas=betas, temperature=self.merge_temperature,
                           margin=self.merge_margin, relevance=relevance, align=self.merge_align,
                           outer=self.merge_outer, inner=self.merge_inner,
                           position_weight=self.merge_position_weight, decollide=self.merge_decollide,
                           seed=self.seed)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        return cls(**d)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


class Run:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.collection: Collection = load_dataset(cfg.dataset, cfg.data_dir, cfg.qrels_dir)
        self.out = Path(cfg.out or f"runs/{self.collection.name}")
        self.out.mkdir(parents=True, exist_ok=True)
        self.docs = list(self.collection.corpus.values())
        self.doc_ids = [d.id for d in self.docs]
        self.test_split = cfg.test_split
        if cfg.holdout:
            from genir.data.splits import hold_out

            if not cfg.train_split:
                raise ValueError("--holdout needs a training split")
            kept, held = hold_out(self.collection.qrels_for(cfg.train_split), cfg.holdout, cfg.seed)
            self.collection.qrels[cfg.train_split] = kept
            self.collection.qrels["holdout"] = held
            self.test_split = "holdout"
        test = self.collection.qrels_for(self.test_split)
        self.test_queries = self.collection.split_queries(self.test_split)
        if cfg.max_test_queries:
            self.test_queries = dict(list(self.test_queries.items())[: cfg.max_test_queries])
        self.qrels = {q: test[q] for q in self.test_queries}
        self.subsets: dict[str, set[str]] = {}
        if cfg.train_split and cfg.train_split in self.collection.qrels:
            seen, unseen = seen_unseen(self.collection.qrels[cfg.train_split], self.qrels)
            self.subsets = {"seen": seen, "unseen": unseen}
        # new documents: a slice of the corpus no training example touches; methods index it afterwards
        # (their own way: tied vectors are encoded, semantic docids are clustered, atomic ones never trained)
        self.new_doc_ids: set[str] = set()
        if cfg.new_docs:
            import random

            n_new = int(round(len(self.doc_ids) * cfg.new_docs))
            self.new_doc_ids = set(random.Random(cfg.seed).sample(self.doc_ids, n_new))
            self.subsets["new-docs"] = {q for q, r in self.qrels.items()
                                        if any(g > 0 and d in self.new_doc_ids for d, g in r.items())}
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        self._dense_encoder = None
        self._doc_embeddings: np.ndarray | None = None
        self._examples = None
        self._encoded = None
        self._bm25 = None
        self.encode_seconds = 0.0

    # -- shared, computed once -----------------------------------------------------------------
    def dense_encoder(self):
        if self._dense_encoder is None:
            from genir.search.dense import load_sentence_encoder

            self._dense_encoder = load_sentence_encoder(self.cfg.dense_model)
        return self._dense_encoder

    def doc_embeddings(self) -> np.ndarray:
        """Dense document embeddings, shared by the dense baseline and semantic docids; cached on disk."""
        path, meta = self.out / "doc_embeddings.npy", self.out / "doc_embeddings.json"
        model = self.cfg.dense_model or "bundled all-MiniLM-L6-v2"
        if self._doc_embeddings is None and path.exists() and meta.exists() \
                and json.loads(meta.read_text()).get("model", model) == model:
            self._doc_embeddings = np.load(path)
        if self._doc_embeddings is None:
            start = time.perf_counter()
            emb = self.dense_encoder().encode([d.full_text for d in self.docs], batch_size=64,
                                              normalize_embeddings=True, convert_to_numpy=True,
                                              show_progress_bar=True)
            self.embed_seconds = time.perf_counter() - start
            tmp = self.out / "doc_embeddings.tmp.npy"
            np.save(tmp, emb)
            os.replace(tmp, path)
            _write_json(meta, {"seconds": self.embed_seconds, "model": model})
            self._doc_embeddings = emb
        return self._doc_embeddings

    def pseudo_queries(self) -> dict[str, list[str]]:
        spec = self.cfg.pseudo_queries
        if spec == "docasquery":
            return DocAsQuery(self.cfg.span_words, self.cfg.random_spans, self.cfg.seed).generate(self.docs)
        if spec.startswith("doc2query:"):
            from genir.data.pseudo_queries import Doc2Query

            model_name = spec.split(":", 1)[1]
            pq = Doc2Query(model_name, n_queries=self.cfg.doc2query_n, seed=self.cfg.seed).generate(self.docs)
        else:
            pq = load_pseudo_queries(spec, self.collection.corpus)
        lead = DocAsQuery(self.cfg.span_words, 0).generate(self.docs)  # the document's own text comes first
        return {d: lead[d] + pq.get(d, []) for d in lead}

    def genret_config(self):
        return self.cfg.genret()

    def glen_config(self):
        return self.cfg.glen()

    def lead_texts(self, docs) -> list[str]:
        """The text a document is represented by as model input: its leading span (as in training)."""
        lead = DocAsQuery(self.cfg.span_words, 0).generate(docs)
        return [(lead[d.id] or [d.full_text])[0] for d in docs]

    def examples(self):
        if self._examples is None:
            from genir.training.data import build_dsi_examples

            train = self.cfg.train_split if self.cfg.train_split in self.collection.qrels else None
            trained = {d: i for i, d in enumerate(self.doc_ids) if d not in self.new_doc_ids}
            self._examples = build_dsi_examples(self.collection, self.pseudo_queries(), train, trained)
        return self._examples

    def encoded(self, model):
        """Frozen-encoder states of every training text, shared by all methods on this backbone; kept in
        ``encoded_texts.pt`` so that a resumed run does not encode again (keyed by backbone and texts)."""
        if self._encoded is None:
            import hashlib

            from genir.training.data import EncodedTexts

            texts = self.examples().texts
            key = hashlib.sha1("\n".join([self.cfg.backbone, str(self.cfg.doc_max_length), *texts]).encode())
            key = key.hexdigest()
            path = self.out / "encoded_texts.pt"
            if path.exists():
                cached = torch.load(path, weights_only=False)
                if cached.get("key") == key:
                    self._encoded = cached["encoded"]
            if self._encoded is None:
                start = time.perf_counter()
                self._encoded = EncodedTexts(model, texts, self.cfg.doc_max_length)
                self.encode_seconds = time.perf_counter() - start
                tmp = path.with_name(path.name + ".tmp")
                torch.save({"key": key, "encoded": self._encoded, "seconds": self.encode_seconds}, tmp)
                os.replace(tmp, path)
            else:
                self.encode_seconds = float(cached.get("seconds", 0.0))
        return self._encoded

    # -- stages --------------------------------------------------------------------------------
    def evaluate_searcher(self, searcher: Searcher, name: str, folder: Path, extra: dict) -> dict:
        results, qps = timed_search(searcher, self.test_queries, self.cfg.k)
        write_run(results, folder / f"{name}.trec", tag=name)
        metrics = evaluate(results, self.qrels, subsets=self.subsets)
        return {"name": name, "metrics": metrics, "queries_per_second": qps, **extra}

    def baseline(self, name: str) -> dict:
        folder = self.out / "baselines"
        folder.mkdir(exist_ok=True)
        done = folder / f"{name}.json"
        if done.exists():
            return json.loads(done.read_text())
        start = time.perf_counter()
        if name == "bm25":
            searcher, label = self.bm25(), "BM25"
        elif name == "dense":
            from genir.search.dense import DenseSearcher

            searcher = DenseSearcher(self.docs, encoder=self.dense_encoder(), doc_embeddings=self.doc_embeddings())
            label = "Dense (" + (self.cfg.dense_model or "all-MiniLM-L6-v2, bundled") + ")"
        elif name == "dense-trained":
            searcher, train_s = self.train_dense()
            label = "Dense, fine-tuned on the training queries (" + (self.cfg.dense_model or "all-MiniLM-L6-v2") + ")"
        else:
            raise ValueError(f"unknown baseline {name!r}; choose bm25, dense or dense-trained")
        index_s = time.perf_counter() - start
        if name == "dense-trained":
            index_s -= train_s  # reported apart, as for the generative methods
        if name == "dense" and (self.out / "doc_embeddings.json").exists():
            index_s = json.loads((self.out / "doc_embeddings.json").read_text())["seconds"]
        result = self.evaluate_searcher(searcher, name, folder, {
            "label": label, "kind": "baseline", "index_seconds": index_s,
            "indexing_docs_per_second": len(self.docs) / max(index_s, 1e-9),
            "index_bytes_per_doc": (searcher.index_bytes() or 0) / len(self.docs),
            **({"train_seconds": train_s, "encoder": "full"} if name == "dense-trained" else {})})
        _write_json(done, result)
        return result

    def train_dense(self):
        """The dense baseline fine-tuned (full model) on the training queries with in-batch + BM25 negatives."""
        from genir.search.dense import DenseSearcher, load_sentence_encoder
        from genir.training import TrainConfig, Trainer
        from genir.training.data import BiEncoderCollator, ContrastiveDataset
        from genir.training.objectives import dense_contrastive_loss

        if not (self.cfg.train_split and self.cfg.train_split in self.collection.qrels):
            raise ValueError("dense-trained needs a training split")
        st = load_sentence_encoder(self.cfg.dense_model)
        st.max_seq_length = self.cfg.dense_train_max_length
        index = {d: i for i, d in enumerate(self.doc_ids)}
        qids = sorted(self.collection.qrels[self.cfg.train_split])
        pairs = [(qi, index[d]) for qi, q in enumerate(qids)
                 for d, g in self.collection.qrels[self.cfg.train_split][q].items()
                 if g > 0 and d not in self.new_doc_ids]
        texts = [self.collection.queries[q] for q in qids]
        ranked = self.bm25().batch_search({str(i): t for i, t in enumerate(texts)}, self.cfg.tied_negative_depth)
        positives = {qi: {d for q2, d in pairs if q2 == qi} for qi in range(len(qids))}
        negatives = {qi: [index[h.doc_id] for h in ranked[str(qi)] if index[h.doc_id] not in positives[qi]
                          and h.doc_id not in self.new_doc_ids] for qi in range(len(qids))}
        docs = [d.full_text for d in self.docs]
        tcfg = TrainConfig(epochs=self.cfg.dense_epochs, batch_size=self.cfg.dense_batch_size,
                           lr=self.cfg.encoder_lr, encoder_lr=self.cfg.encoder_lr, warmup_ratio=0.1,
                           seed=self.cfg.seed)
        folder = self.out / "baselines" / "dense-trained"
        trainer = Trainer(st, dense_contrastive_loss, ContrastiveDataset(pairs),
                          BiEncoderCollator(st, texts, docs, negatives, self.cfg.seed), tcfg, folder / "checkpoints",
                          desc="train dense")
        info = trainer.train()
        st.max_seq_length = 256
        return DenseSearcher(self.docs, encoder=st), info["seconds"]

    def bm25(self):
        """One BM25 index for the baseline and for methods that mine negatives with it."""
        if self._bm25 is None:
            from genir.search.bm25 import BM25Searcher

            self._bm25 = BM25Searcher(self.docs)
        return self._bm25

    def generative(self, method_name: str) -> dict:
        from genir.models import DocidSeq2Seq

        cfg, method = self.cfg, get_method(method_name)
        folder = self.out / method_name
        done = folder / "result.json"
        if done.exists():
            result = json.loads(done.read_text())
            if "docid_relevance" not in result and (folder / "docids" / "docids.json").exists():
                table = DocIdTable.load(folder / "docids")  # a result from before the Table 3 statistic
                if table.max_length > 1:
                    result["docid_relevance"] = self.docid_relevance(table)
                    _write_json(done, result)
            return result
        folder.mkdir(exist_ok=True)
        start = time.perf_counter()
        model_dir = folder / "model"
        train_info: dict
        docid_s = 0.0
        if method.learn_docids is not None:  # docids come out of training (GenRet, ...)
            if (model_dir / "genir_model.json").exists() and (folder / "docids" / "docids.json").exists():
                model = DocidSeq2Seq.load(model_dir).to(self.device)
                table = DocIdTable.load(folder / "docids")
                train_info = json.loads((folder / "train.json").read_text())
            else:
                model, table, train_info = method.learn_docids(self, folder)
                train_info = {**train_info, "encoder": cfg.encoder,
                              "encode_seconds": self.encode_seconds if cfg.encoder == "frozen" else 0.0,
                              "parameters": model.n_parameters()}
                table.save(folder / "docids")
                model.save(model_dir)
                _write_json(folder / "train.json", train_info)
            trie = PrefixTree(table)
        else:
            # 1. docids
            if (folder / "docids" / "docids.json").exists():
                table = DocIdTable.load(folder / "docids")
            else:
                ctx = MethodContext(self.doc_ids, self.doc_embeddings, {
                    "semantic_c": cfg.semantic_c, "seed": cfg.seed, "run_out": str(self.out),
                    "folder": str(folder), "run_config": cfg, "train_qrels": self.train_qrels(),
                    "new_docs": sorted(i for i, d in enumerate(self.doc_ids) if d in self.new_doc_ids)})
                table = method.make_docids(ctx)
                table.save(folder / "docids")
            docid_s = time.perf_counter() - start
            trie = PrefixTree(table)
            # 2. model + training
            if (model_dir / "genir_model.json").exists():
                model = DocidSeq2Seq.load(model_dir).to(self.device)
                train_info = json.loads((folder / "train.json").read_text())
            else:
                model, train_info = self._train(method, method_name, table, trie, folder)
        model.eval()
        # 3. search at the reported beam, and at beam 10 for speed
        index_start = time.perf_counter()
        searcher = method.searcher(self, model, table, method_name, cfg.beam)
        searcher_s = time.perf_counter() - index_start  # e.g. encoding documents for tied docids
        index_s = docid_s + train_info["seconds"] + train_info.get("encode_seconds", 0.0) + searcher_s
        result = self.evaluate_searcher(searcher, method_name, folder, {
            "label": method_name, "kind": "generative", "method": method_name, "description": method.description,
            "encoder": cfg.encoder, "backbone": cfg.backbone, "beam": cfg.beam,
            "docids": table.stats(), "docid_seconds": docid_s,
            "train_seconds": train_info["seconds"], "train_steps": train_info["steps"],
            "encode_seconds": train_info.get("encode_seconds", 0.0),
            "index_seconds": index_s, "indexing_docs_per_second": len(self.docs) / max(index_s, 1e-9),
            "index_bytes_per_doc": searcher.index_bytes() / len(self.docs),
            "parameters": train_info.get("parameters")})
        if "progressive" in train_info:  # learned docids: diversity and collapse checks per step
            result["progressive"] = [{k: v for k, v in e.items() if k not in ("train", "warmup")}
                                     for e in train_info["progressive"]]
        if table.max_length > 1:  # MERGE Table 3, for every multi-level docid scheme
            result["docid_relevance"] = self.docid_relevance(table)
        if "rqvae" in table.meta:  # RQ-VAE training and de-collision figures (MERGE, vanilla RQ-VAE)
            result["rqvae"] = table.meta["rqvae"]
        if table.scheme in ("glen", "keyword"):  # lexical identifiers, shown as words (GLEN Table 7)
            result["inspection"] = self.lexical_inspection(model, table, folder, method_name)
            result["tie_break"] = self.tie_break_comparison(searcher, table)
        if hasattr(searcher, "compare_modes"):  # tied docids: generative and dense inference must agree
            result["mode_agreement"] = searcher.compare_modes(self.test_queries, cfg.k)
        if isinstance(getattr(searcher, "beam", None), int):  # beam search: speed at beam 10 too, same searcher
            searcher.beam = 10
            _, result["queries_per_second_beam10"] = timed_search(searcher, self.test_queries, cfg.k)
            searcher.beam = cfg.beam
            result[f"queries_per_second_beam{cfg.beam}"] = result["queries_per_second"]
        _write_json(done, result)
        return result

    def _train(self, method, method_name: str, table: DocIdTable, trie: PrefixTree, folder: Path):
        from genir.models import DocidSeq2Seq, ModelConfig
        from genir.training import TrainConfig, Trainer

        cfg = self.cfg
        mcfg = ModelConfig(n_codes=method.n_codes(table), backbone=cfg.backbone,
                           decoder_layers=cfg.decoder_layers, decoder_ff=cfg.decoder_ff,
                           decoder_dim=cfg.decoder_dim, max_docid_length=trie.depth,
                           query_max_length=cfg.query_max_length, doc_max_length=cfg.doc_max_length,
                           extra={"method": method_name, **method.model_extra(self)})
        model = DocidSeq2Seq(mcfg).to(self.device)
        model.freeze_encoder(cfg.encoder == "frozen")
        dataset, collate = method.training_data(self, model, table, trie)
        tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, encoder_lr=cfg.encoder_lr,
                           seed=cfg.seed)
        trainer = Trainer(model, method.objective, dataset, collate, tcfg, folder / "checkpoints",
                          desc=f"train {method_name}")
        info = trainer.train()
        train_info = {**info, "encoder": cfg.encoder, "examples": len(dataset),
                      "encode_seconds": self.encode_seconds if cfg.encoder == "frozen" else 0.0,
                      "history": trainer.history, "train_config": asdict(tcfg),
                      "parameters": model.n_parameters()}
        model.save(folder / "model")
        _write_json(folder / "train.json", train_info)
        return model, train_info

    def transferred(self, source: Path, method_name: str) -> dict:
        """Zero-shot: the model trained in ``source/method_name`` indexes this run's corpus (no retraining)
        and answers its test queries (GLEN Sec. 4, the BEIR setting)."""
        from genir.models import DocidSeq2Seq

        method = get_method(method_name)
        folder = self.out / method_name
        done = folder / "result.json"
        if done.exists():
            return json.loads(done.read_text())
        model_dir = Path(source) / method_name / "model"
        if not (model_dir / "genir_model.json").exists():
            raise ValueError(f"{model_dir}: no trained {method_name} model to transfer")
        if method.index_corpus is None:
            raise ValueError(f"{method_name} cannot index a corpus it was not trained on without retraining")
        folder.mkdir(parents=True, exist_ok=True)
        model = DocidSeq2Seq.load(model_dir).to(self.device).eval()
        start = time.perf_counter()
        table = method.index_corpus(self, model, folder)
        trie = PrefixTree(table)
        if trie.depth > model.config.max_docid_length:
            raise ValueError(f"{method_name}: this corpus needs docids of {trie.depth} steps; the model decodes "
                             f"at most {model.config.max_docid_length}")
        table.save(folder / "docids")
        index_s = time.perf_counter() - start
        searcher = method.searcher(self, model, table, method_name, self.cfg.beam)
        result = self.evaluate_searcher(searcher, method_name, folder, {
            "label": f"{method_name} (trained on {Path(source).name})", "kind": "generative",
            "method": method_name, "description": method.description, "transferred_from": str(source),
            "beam": self.cfg.beam, "docids": table.stats(), "train_seconds": 0.0, "train_steps": 0,
            "index_seconds": index_s, "indexing_docs_per_second": len(self.docs) / max(index_s, 1e-9),
            "index_bytes_per_doc": searcher.index_bytes() / len(self.docs), "parameters": model.n_parameters()})
        if table.scheme == "glen":
            result["tie_break"] = self.tie_break_comparison(searcher, table)
        _write_json(done, result)
        return result

    def train_qrels(self) -> dict[str, dict[int, int]]:
        """Graded training judgements by document index (documents held out as new are left out)."""
        split = self.cfg.train_split
        if not split or split not in self.collection.qrels:
            return {}
        index = {d: i for i, d in enumerate(self.doc_ids) if d not in self.new_doc_ids}
        return {q: {index[d]: g for d, g in rels.items() if d in index}
                for q, rels in self.collection.qrels_for(split).items()}

    def docid_relevance(self, table: DocIdTable) -> dict:
        """MERGE Table 3: distinct codes per docid level among each query's relevant documents (test and
        training queries with at least two relevant documents; lower = they share more of their docids)."""
        from genir.docids.rqvae import distinct_codes_per_level

        index = {d: i for i, d in enumerate(table.doc_ids)}
        out = {"test": distinct_codes_per_level(table.codes, index, self.qrels)}
        split = self.cfg.train_split
        if split and split in self.collection.qrels:
            out["train"] = distinct_codes_per_level(table.codes, index, self.collection.qrels_for(split))
        return out

    def tie_break_comparison(self, searcher, table: DocIdTable, random_seeds: int = 3) -> dict:
        """GLEN Table 5: on the test queries whose relevant document shares its identifier with another
        document, colliding documents ranked by cos(w^q, w^d) (Eq. 9) vs in random order (mean of
        ``random_seeds`` orders). Same model, same beam; only the order within an identifier differs."""
        import random

        colliding = {table.doc_ids[i] for group in table.groups().values() if len(group) > 1 for i in group}
        subset = sorted(q for q, rels in self.qrels.items() if any(g > 0 and d in colliding for d, g in rels.items()))
        out: dict = {"queries": len(subset), "colliding_documents": len(colliding)}
        if not subset:
            return out
        queries = {q: self.test_queries[q] for q in subset}
        qrels = {q: self.qrels[q] for q in subset}
        mode, rng = searcher.tie_mode, searcher.rng
        try:
            searcher.tie_mode = "cosine"
            out["cosine"] = evaluate(searcher.batch_search(queries, self.cfg.k), qrels)["full"]
            searcher.tie_mode = "random"
            runs = []
            for seed in range(random_seeds):
                searcher.rng = random.Random(seed)
                runs.append(evaluate(searcher.batch_search(queries, self.cfg.k), qrels)["full"])
            out["random"] = {m: float(np.mean([r[m] for r in runs])) for m in runs[0]}
        finally:
            searcher.tie_mode, searcher.rng = mode, rng
        return out

    def lexical_inspection(self, model, table: DocIdTable, folder: Path, name: str, n: int = 5) -> dict:
        """Sample test queries with the identifiers (as words) of their top documents, a few documents'
        identifiers after phase 1 and after refinement, and how many documents identifiers hold."""
        from collections import Counter

        from genir.docids.lexical import identifier_words
        from genir.evaluation.trec import read_run

        tok = model.tokenizer
        index = {d: i for i, d in enumerate(table.doc_ids)}
        words = [identifier_words(tok, c) for c in table.codes]
        run_file = read_run(folder / f"{name}.trec")
        queries = []
        for qid in list(self.test_queries)[:n]:
            top = [h.doc_id for h in run_file.get(qid, [])[:3]]
            queries.append({"query": self.test_queries[qid],
                            "top": [[d, words[index[d]], self.qrels.get(qid, {}).get(d, 0) > 0] for d in top]})
        before = folder / "identifiers_phase1.npy"
        phase1 = np.load(before) if before.exists() else None
        changed = [] if phase1 is None else np.flatnonzero((phase1 != table.codes).any(1)).tolist()
        # the first documents, then (when refinement moved any) documents whose identifier changed
        shown = list(range(min(n, len(table)))) + [i for i in changed if i >= n][:n]
        docs = [{"doc": table.doc_ids[i], "title": self.docs[i].title[:80] or self.docs[i].text[:80],
                 "phase1": identifier_words(tok, phase1[i]) if phase1 is not None else None,
                 "final": words[i]} for i in shown]
        sizes = Counter(Counter(words).values())
        return {"queries": queries, "documents": docs, "docs_per_identifier": dict(sorted(sizes.items())),
                "changed_by_refinement": None if phase1 is None else len(changed)}

    def run(self, transfer_from: Path | None = None) -> dict:
        """Baselines, then the methods: trained here, or (``transfer_from``, a run folder) the models
        trained there indexing this corpus without retraining."""
        start = time.perf_counter()
        origin = {"transferred_from": str(transfer_from)} if transfer_from else {}
        _write_json(self.out / "config.json", {**asdict(self.cfg), **origin})
        results = []
        for b in tqdm(self.cfg.baselines, desc="baselines", leave=False):
            results.append(self.baseline(b))
        for m in self.cfg.methods:
            results.append(self.transferred(transfer_from, m) if transfer_from else self.generative(m))
        report = {
            "dataset": self.collection.name, "test_split": self.test_split,
            "queries": {"full": len(self.qrels), **{k: len(v) for k, v in self.subsets.items()}},
            "documents": len(self.docs), "config": asdict(self.cfg), "systems": results, **origin,
            "device": (torch.cuda.get_device_name() if self.device == "cuda"
                       else f"cpu ({torch.get_num_threads()} threads)"),
            "wall_seconds_this_invocation": time.perf_counter() - start,
        }
        write_report(report, self.out)
        return report


def run(cfg: RunConfig) -> dict:
    return Run(cfg).run()


def transfer(source: str | Path, cfg: RunConfig) -> dict:
    """Zero-shot transfer: the methods trained in the run folder ``source`` index ``cfg.dataset``'s corpus
    and search its test queries without retraining; ``cfg.baselines`` run on it as usual."""
    source = Path(source)
    if not (source / "config.json").exists():
        raise ValueError(f"{source}: not a genir run folder (no config.json)")
    return Run(cfg).run(transfer_from=source)
