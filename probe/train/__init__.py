"""Training heads on cached features: the loop API every experiment and the notebook use.

`probe.train.config` says how a head trains, `probe.train.data` holds one split,
`probe.train.views` lays it out for a head, `probe.train.loop` fits and predicts, and
`probe.train.optim` is the optimiser. Fine-tuning is not re-exported here: importing this
package must stay cheap (no transformers, no torch._dynamo), tests/test_heads_train.py checks.
"""

from probe.train.config import EVAL_BATCH, EpochLog, LayerArrays, Layers, TrainConfig, TrainResult
from probe.train.data import PairData, SequenceData, WordData
from probe.train.loop import evaluate, fit, predict_proba
from probe.train.optim import AdamW
from probe.train.views import Batch, Feed, PairView, SentenceView, WordView

__all__ = [
    "EVAL_BATCH",
    "AdamW",
    "Batch",
    "EpochLog",
    "Feed",
    "LayerArrays",
    "Layers",
    "PairData",
    "PairView",
    "SentenceView",
    "SequenceData",
    "TrainConfig",
    "TrainResult",
    "WordData",
    "WordView",
    "evaluate",
    "fit",
    "predict_proba",
]
