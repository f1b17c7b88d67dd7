"""Docids from a relevance-trained encoder (dsi.docid_encoder / merge.docid_encoder = trained): the dense
encoder fine-tuned on the training queries embeds the corpus, the semantic docids cluster those embeddings,
the stage fingerprint holds the dense settings that made them, and what cannot use them refuses."""

from __future__ import annotations

import numpy as np
import pytest

from genir.methods import get_method, make_settings
from genir.methods.baselines import refuse_trained_encoder, trained_doc_embeddings
from genir.methods.dsi.settings import DsiSettings
from genir.stages import method_fingerprint
from genir.workspace import Workspace
from tests.test_settings import scifact_small  # noqa: F401 - the fixture


def test_semantic_docids_from_the_fine_tuned_encoder(scifact_small, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    settings = make_settings({"data": {"dataset": str(scifact_small)}, "dense": {"batch_size": 4}, "out": str(out)})
    ws = Workspace(settings)
    tuned, zero = trained_doc_embeddings(ws), ws.doc_embeddings()
    assert tuned.shape == zero.shape and not np.allclose(tuned, zero, atol=1e-3)
    assert np.allclose(np.linalg.norm(tuned, axis=1), 1, atol=1e-4)
    made = (out / "doc_embeddings_trained.npy").stat().st_mtime_ns
    assert np.array_equal(trained_doc_embeddings(Workspace(settings)), tuned)  # kept, not trained again
    assert (out / "doc_embeddings_trained.npy").stat().st_mtime_ns == made
    assert not any(p.is_file() for p in (out / "dense_trained_encoder").rglob("*"))  # no checkpoints left
    settings.set("training.grad_clip", 0.5)  # read by the encoder's training loop: the kept embeddings are stale
    assert not np.array_equal(trained_doc_embeddings(Workspace(settings)), tuned)
    assert (out / "doc_embeddings_trained.npy").stat().st_mtime_ns != made
    settings.set("training.grad_clip", 1.0)

    dsi = get_method("dsi-semantic")
    by_tuned = dsi.make_docids(ws, DsiSettings(semantic_c=4, docid_encoder="trained"), out)
    by_zero = dsi.make_docids(ws, DsiSettings(semantic_c=4), out)
    assert by_tuned.sequences() != by_zero.sequences()

    settings.dsi.docid_encoder = "trained"
    fingerprint = method_fingerprint(settings, "dsi", {}).train
    assert fingerprint["dsi.docid_encoder"] == "trained" and fingerprint["dense.batch_size"] == 4
    settings.dsi.docid_encoder = "zero-shot"
    assert "dense.batch_size" not in method_fingerprint(settings, "dsi", {}).train

    with pytest.raises(ValueError, match="docid_encoder=trained"):
        refuse_trained_encoder(DsiSettings(docid_encoder="trained"), "place a new document")
    refuse_trained_encoder(DsiSettings(), "place a new document")
