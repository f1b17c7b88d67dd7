"""Keyword identifiers over a backbone's vocabulary (GLEN Sec. 3.3.1, Eq. 4's targets).

z^key of a document = its top-n vocabulary tokens by BM25 weight. The paper says "top-n tokens with the
highest tf-idf scores using BM25"; the BM25 settings left open are the authors' code's: term frequency
over the first 156 tokens of the lower-cased document, IDF = log(1 + (N - df + 0.5) / (df + 0.5)),
k1 = 100, b = 0.75, tokens without a letter and special tokens dropped. numpy throughout.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from genir.docids.table import DocIdTable


def keyword_docids(doc_ids: list[str], texts: list[str], tokenizer, n: int = 3, max_tokens: int = 156,
                   k1: float = 100.0, b: float = 0.75) -> DocIdTable:
    """Each document's n highest-BM25 tokens (token ids of ``tokenizer``), best first."""
    vocab = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    words = tokenizer.convert_ids_to_tokens(list(range(vocab)))
    usable = np.array([i not in special and any(c.isalpha() for c in w) for i, w in enumerate(words)])
    rows, cols = [], []
    for i, text in enumerate(texts):
        ids = tokenizer(text.lower(), add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]
        ids = [t for t in ids if usable[t]]
        rows.extend([i] * len(ids))
        cols.extend(ids)
    tf = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(texts), vocab))
    tf.sum_duplicates()
    lengths = np.asarray(tf.sum(1)).ravel()
    df = np.bincount(tf.indices, minlength=vocab)
    idf = np.log1p((len(texts) - df + 0.5) / (df + 0.5)).astype(np.float32)
    codes = np.zeros((len(texts), n), dtype=np.int64)
    avg = max(lengths.mean(), 1e-9)
    for i in range(len(texts)):
        lo, hi = tf.indptr[i], tf.indptr[i + 1]
        terms, freq = tf.indices[lo:hi], tf.data[lo:hi]
        if len(terms) == 0:  # no usable token: the unknown token stands in
            codes[i] = tokenizer.unk_token_id
            continue
        weight = idf[terms] * freq * (k1 + 1) / (freq + k1 * (1 - b + b * lengths[i] / avg))
        order = terms[np.lexsort((terms, -weight))]  # by weight, then token id: deterministic
        top = list(order[:n])
        codes[i] = top + [top[-1]] * (n - len(top))  # short documents repeat their last keyword
    return DocIdTable(doc_ids, codes, vocab, "keyword", {"n": n, "k1": k1, "b": b, "max_tokens": max_tokens})


def identifier_words(tokenizer, codes) -> str:
    """An identifier as words, e.g. 'apoptosis-p53-cells' (the paper's Table 7 style)."""
    return "-".join(tokenizer.convert_ids_to_tokens([int(c) for c in codes if int(c) >= 0]))
