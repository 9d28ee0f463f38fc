"""Accuracy on the user's labelled data (``edgecv evaluate``) and the precision chosen under an accuracy budget
(``edgecv quantize --max-drop``). Nothing here imports TensorFlow at module level."""

from __future__ import annotations

from edgecv.evaluation.api import ArtifactAccuracy, Evaluation, evaluate
from edgecv.evaluation.data import DataSummary, Dataset
from edgecv.evaluation.metrics import ClassLoss

__all__ = ["ArtifactAccuracy", "ClassLoss", "DataSummary", "Dataset", "Evaluation", "evaluate"]
