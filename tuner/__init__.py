"""keras-tuner search of GoogLeNet's Inception channel ratios: `python -m tuner.search`.

- `tuner.space`: the search space as data (`SearchSpace`), sampled values to a
  `blocks` table (`blocks_from_values`), analytic MFLOPs/parameter counts
  (`CostModel`) and budgets (`Budget`); no Keras needed.
- `tuner.hypermodel`: `HyperGoogLeNet` (a `keras_tuner.HyperModel`), the
  budget-aware oracles and `make_tuner`.
- `tuner.folder`: the search folder (fingerprint, summary, `best_config.json`).
- `tuner.search`: the command line.

Keras and keras-tuner are imported only by `tuner.hypermodel` and `tuner.search`.
"""

from tuner.space import (
    PAPER_OUTPUTS,
    PAPER_VALUES,
    Budget,
    BudgetError,
    CostModel,
    SearchSpace,
    SpaceError,
    blocks_from_values,
    shares,
)

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
