"""Pseudo-queries that index a document: DocAsQuery spans out of the box, doc2query when a model is given.

DSI indexes with the document's leading tokens; NCI adds random spans ("DocAsQuery"). Both need no model.
A doc2query seq2seq model (any HF name or path) or a file of pre-generated queries is used when supplied.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from genir.data.collection import DataError, Document, nfc_hint, numbered_lines

PseudoQueries = dict[str, list[str]]  # document id -> queries


class DocAsQuery:
    """Leading span (``lead_words`` words; 0: ``span_words``) plus ``n_random`` random spans of ``span_words``
    words, deterministic per document."""

    def __init__(self, span_words: int = 64, n_random: int = 1, seed: int = 0, lead_words: int = 0,
                 short_spans: bool = False):
        self.span_words, self.n_random, self.seed = span_words, n_random, seed
        self.lead_words = lead_words or span_words
        # a document of span_words words or fewer gets spans of half its words, and no span is the leading text
        self.short_spans = short_spans

    def generate(self, docs: list[Document]) -> PseudoQueries:
        out: PseudoQueries = {}
        for doc in docs:
            words = doc.full_text.split()
            spans = [" ".join(words[: self.lead_words])]
            width = self.span_words if len(words) > self.span_words else (
                len(words) // 2 if self.short_spans and len(words) >= 2 else 0)
            if width:
                rng = random.Random(f"{self.seed}:{doc.id}")
                # with short_spans a span never starts where the leading text does (it would be that text)
                first = 1 if self.short_spans and len(words) > width else 0
                for _ in range(self.n_random):
                    start = rng.randrange(first, len(words) - width + 1)
                    spans.append(" ".join(words[start: start + width]))
            out[doc.id] = [s for s in spans if s]
        return out


def lead_spans(docs: list[Document], span_words: int, lead_words: int = 0) -> list[str]:
    """Each document's leading span of ``lead_words`` words (0: ``span_words``): the text a model reads for
    it (the whole text when it has no words)."""
    lead = DocAsQuery(span_words, 0, lead_words=lead_words).generate(docs)
    return [(lead[d.id] or [d.full_text])[0] for d in docs]


# -- query-free signals beyond the spans (issue 16: what a document is found by, without a query model) --------
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]+")


def sentence_queries(doc: Document, n: int, seed: int = 0, min_words: int = 4) -> list[str]:
    """Up to ``n`` of the document's sentences (title excluded), drawn without replacement, deterministic per
    document and seed, in the document's order. A sentence is closer in length and form to a query than a
    64-word span; sentences shorter than ``min_words`` words (headings, numbers) are skipped."""
    sentences = [s.strip() for s in _SENTENCE_END.split(doc.text) if len(s.split()) >= min_words]
    if len(sentences) > n:
        rng = random.Random(f"{seed}:sentences:{doc.id}")
        sentences = [sentences[i] for i in sorted(rng.sample(range(len(sentences)), n))]
    return sentences


def title_queries(doc: Document) -> list[str]:
    """The title as a query (DSI-QG and GenRet count titles among the best single indexing texts)."""
    return [doc.title.strip()] if doc.title.strip() else []


def keyword_queries(docs: list[Document], n: int, terms: int = 8, k1: float = 0.9,
                    b: float = 0.4) -> PseudoQueries:
    """``n`` keyword queries per document: its words ranked by their BM25 weight in the document (idf x
    saturated tf with length normalisation, BM25's own k1 and b), English stopwords out, ``terms`` words
    per query, the i-th query the i-th group of ``terms``. Surface forms (lower-cased, not stemmed), so
    that a query the encoder reads is made of words it knows."""
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    stop = set(STOPWORDS_EN_PLUS)
    counts = [Counter(w for w in (m.group(0).lower() for m in _WORD.finditer(d.full_text)) if w not in stop)
              for d in docs]
    df = Counter(w for c in counts for w in c)
    lengths = [sum(c.values()) for c in counts]
    avg = max(sum(lengths) / max(len(docs), 1), 1e-9)
    idf = {w: math.log(1 + (len(docs) - n_w + 0.5) / (n_w + 0.5)) for w, n_w in df.items()}  # Lucene's idf
    out: PseudoQueries = {}
    for doc, c, length in zip(docs, counts, lengths, strict=True):
        norm = k1 * (1 - b + b * length / avg)
        weight = {w: idf[w] * tf * (k1 + 1) / (tf + norm) for w, tf in c.items()}
        ranked = sorted(c, key=lambda w: (-weight[w], w))
        out[doc.id] = [" ".join(ranked[i * terms: (i + 1) * terms]) for i in range(n) if ranked[i * terms:]]
    return out


def add_signals(pseudo: PseudoQueries, docs: list[Document], *, sentences: int = 0, title: bool = False,
                keywords: int = 0, keyword_terms: int = 8, seed: int = 0) -> PseudoQueries:
    """``pseudo`` with each document's query-free signals appended (a text already there is not repeated)."""
    kw = keyword_queries(docs, keywords, keyword_terms) if keywords else {}
    out: PseudoQueries = {}
    for doc in docs:
        texts = list(pseudo.get(doc.id, []))
        extra = (sentence_queries(doc, sentences, seed) if sentences else []) + \
            (title_queries(doc) if title else []) + kw.get(doc.id, [])
        out[doc.id] = texts + [t for t in dict.fromkeys(extra) if t not in texts]
    return out


class Doc2Query:
    """Queries sampled from a seq2seq doc2query model (e.g. ``doc2query/msmarco-t5-base-v1``) by name or path."""

    def __init__(self, model_name_or_path: str, n_queries: int = 5, max_input_tokens: int = 256,
                 max_query_tokens: int = 32, batch_size: int = 16, top_k: int = 10, seed: int = 0,
                 device: str | None = None):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model_name_or_path).eval()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.n_queries, self.max_input_tokens, self.max_query_tokens = n_queries, max_input_tokens, max_query_tokens
        self.batch_size, self.top_k, self.seed = batch_size, top_k, seed

    def generate(self, docs: list[Document]) -> PseudoQueries:
        import torch

        torch.manual_seed(self.seed)
        out: PseudoQueries = {}
        for i in tqdm(range(0, len(docs), self.batch_size), desc="doc2query"):
            batch = docs[i: i + self.batch_size]
            enc = self.tokenizer([d.full_text for d in batch], truncation=True, max_length=self.max_input_tokens,
                                 padding=True, return_tensors="pt", return_token_type_ids=False).to(self.device)
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=self.max_query_tokens, do_sample=True,
                                          top_k=self.top_k, num_return_sequences=self.n_queries)
            texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
            for j, doc in enumerate(batch):
                out[doc.id] = [t.strip() for t in texts[j * self.n_queries: (j + 1) * self.n_queries] if t.strip()]
        return out


def load_pseudo_queries(path: str | Path, corpus: dict[str, Document] | None = None) -> PseudoQueries:
    """Read pre-generated queries: TSV ``doc_id<TAB>query`` or JSONL ``{"doc_id", "query"|"queries"}``."""
    path = Path(path)
    out: PseudoQueries = {}
    for line_no, line in numbered_lines(path):
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, line_no, f"malformed JSON ({e.msg})") from None
            if not isinstance(row, dict) or "doc_id" not in row or not ("query" in row or "queries" in row):
                raise DataError(path, line_no, "expected an object with 'doc_id' and 'query' or 'queries'")
            doc_id, queries = str(row["doc_id"]), row.get("queries") or [row["query"]]
            if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
                raise DataError(path, line_no, "'query' must be text and 'queries' a list of texts")
        else:
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 2:
                raise DataError(path, line_no, f"expected 2 tab-separated columns (doc_id, query), "
                                               f"got {len(cols)}")
            doc_id, queries = cols[0], [cols[1]]
        if corpus is not None and doc_id not in corpus:
            raise DataError(path, line_no, f"document id {doc_id!r} is not in the corpus{nfc_hint(doc_id, corpus)}")
        out.setdefault(doc_id, []).extend(q for q in queries if q.strip())
    if not any(out.values()):
        raise DataError(path, None, "no pseudo-queries in this file")
    return out
