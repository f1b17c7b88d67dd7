"""A saved model folder names its architecture; DocidSeq2Seq.load finds the class through the installed
package's entry points, so the models layer imports no method (and a folder opens before its family is
imported)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from genir.models import ARCHITECTURES, DocidSeq2Seq, ModelConfig
from genir.models.seq2seq import ARCHITECTURE_ENTRY_POINTS


def test_every_registered_architecture_is_declared_as_an_entry_point():
    import genir.methods  # noqa: F401 - every family registers its model class

    declared = {p.name: p.load() for p in entry_points(group=ARCHITECTURE_ENTRY_POINTS)}
    assert set(ARCHITECTURES) == {"codebook", "lexical", "tied"}
    assert declared == ARCHITECTURES  # same names, same classes


def test_a_saved_family_model_loads_before_its_family_is_imported(tiny_bert, tmp_path):
    from genir.methods.tied.model import TiedSeq2Seq

    TiedSeq2Seq(ModelConfig(n_codes=4, backbone=tiny_bert, decoder_heads=2, decoder_ff=32,
                            extra={"tied_residual": True})).save(tmp_path / "m")
    probe = ("import sys; from genir.models import DocidSeq2Seq; "
             "assert 'genir.methods' not in sys.modules; "
             "m = DocidSeq2Seq.load(sys.argv[1]); print(type(m).__module__, type(m).__name__, m.tied_residual)")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "m")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["genir.methods.tied.model", "TiedSeq2Seq", "True"]


def test_an_architecture_nothing_declares_is_a_data_error_naming_the_file(tiny_bert, tmp_path):
    from genir.data import DataError

    DocidSeq2Seq(ModelConfig(n_codes=4, backbone=tiny_bert, decoder_heads=2, decoder_ff=32)).save(tmp_path / "m")
    config = tmp_path / "m" / "genir_model.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "extra": {"architecture": "nowhere"}}))
    with pytest.raises(DataError, match=r"genir_model.json: unknown architecture 'nowhere'"):
        DocidSeq2Seq.load(tmp_path / "m")
