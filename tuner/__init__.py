"""keras-tuner search of GoogLeNet's Inception channel ratios: `python -m tuner.search`.

- `tuner.space`: the search space as data (`SearchSpace`), sampled values to a
  `blocks` table (`blocks_from_values`), the paper's ratios derived from its
  table (`PAPER_VALUES`); no Keras needed.
- `tuner.cost`: analytic MFLOPs/parameter counts (`CostModel`) and budgets
  (`Budget`); no Keras needed.
- `tuner.hypermodel`: `HyperGoogLeNet` (a `keras_tuner.HyperModel`), the
  budget-aware oracles and `make_tuner`.
- `tuner.folder`: the search folder (fingerprint, summary, the best
  configuration as `model_config.json` beside its weights).
- `tuner.search`: the command line.

The architecture facts (block table, stages, stems) come from
`keras_googlenet.architecture`. Keras and keras-tuner are imported only by
`tuner.hypermodel` and `tuner.search`.
"""

from keras_googlenet.architecture import PAPER_OUTPUTS
from tuner.cost import Budget, BudgetError, CostModel
from tuner.space import PAPER_VALUES, SearchSpace, SpaceError, blocks_from_values, shares

__all__ = [
    "PAPER_OUTPUTS",
    "PAPER_VALUES",
    "Budget",
    "BudgetError",
    "CostModel",
    "SearchSpace",
    "SpaceError",
    "blocks_from_values",
    "shares",
]
