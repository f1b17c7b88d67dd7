"""GenRet (Sun et al., "Learning to Tokenize for Generative Retrieval").

``method`` (the recipe and the registry's classes), ``training`` (settings, data, Eq. 6-11, the
progressive trainer), ``model`` (:class:`CodebookSeq2Seq`: one codebook per docid step)."""

from genir.methods.genret.method import GROUPS, METHODS, GenRet, GenRetNoLearn, resolved
from genir.methods.genret.model import CodebookSeq2Seq
from genir.methods.genret.objective import GenRetData, GenRetObjective
from genir.methods.genret.settings import GenRetConfig
from genir.methods.genret.training import ProgressiveTrainer

__all__ = ["GROUPS", "METHODS", "CodebookSeq2Seq", "GenRet", "GenRetConfig", "GenRetData", "GenRetNoLearn",
           "GenRetObjective", "ProgressiveTrainer", "resolved"]
