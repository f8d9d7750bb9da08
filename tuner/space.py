"""The search space of `python -m tuner.search`, as plain data (no Keras needed).

What is searched, per Inception stage (3, 4, 5), shared by every block of the stage:

- the split of a block's output channels between its four branches. It is
  parametrised by three numbers per stage, the channels of the 1x1, 5x5 and
  pool-projection branches *per channel of the 3x3 branch* (`stageN_1x1`,
  `stageN_5x5`, `stageN_pool`); the four shares are these numbers and 1,
  divided by their sum. Three numbers, not four, because shares sum to 1;
  relative to the 3x3 branch because it is the widest branch in every block of
  the paper;
- the 1x1 reductions in front of the 3x3 and 5x5 convolutions, as a fraction of
  the convolution's own channels (`stageN_reduce_3x3`, `stageN_reduce_5x5`;
  the paper uses 0.46-0.75 and 0.25-0.5).

plus one global `width` multiplier.

Stage output widths scale with `width`: every block keeps the paper's number
of output channels (Table 1: 256, 480, 512, 512, 512, 528, 832, 832, 1024), only
its split between branches changes, and `GoogLeNet(width=...)` then scales every
channel count (stem, blocks, auxiliary heads) by `width`, rounding each branch
to the nearest integer. So a sampled block's output has `width` times the
paper's channels, up to +-2 from rounding the four branches separately.

`blocks_from_values` turns sampled values into the `blocks=` table of
`keras_googlenet.GoogLeNet` (unscaled; `width` is passed separately). The
architecture facts (block names, stages, the paper's table and its block
outputs) come from `keras_googlenet.architecture`, and the paper's ratios
(`PAPER_VALUES`) are derived from its table. Costs and budgets are in
`tuner.cost`.
"""

import dataclasses
import math

import numpy as np

from keras_googlenet.architecture import (
    BLOCK_FIELDS,
    BLOCK_NAMES,
    PAPER_BLOCKS,
    PAPER_OUTPUTS,
    STAGE_BLOCKS,
)

#: Most grid steps of one searched range (keras-tuner enumerates the grid).
MAX_STEPS = 10_000

#: The branches whose share of a block's output is searched, in table order.
BRANCHES = ("1x1", "3x3", "5x5", "pool")


def paper_values():
    """Branch widths per 3x3 channel and reduction ratios of the paper, per stage.

    Derived from the block table (`keras_googlenet.architecture.PAPER_BLOCKS`):
    for each stage, ratios of channel totals over the stage's blocks, e.g.
    stage 3's `"1x1"` is (64 + 128) / (128 + 192) channels of 1x1 per channel of
    3x3. Off the search grid: `SearchSpace.default_values` rounds them onto it.

    Returns:
        `{stage: {"1x1", "5x5", "pool", "reduce_3x3", "reduce_5x5": ratio}}`.
    """
    rows = dict(zip(BLOCK_NAMES, PAPER_BLOCKS))
    values = {}
    for stage, names in STAGE_BLOCKS.items():
        total = {field: sum(dict(zip(BLOCK_FIELDS, rows[name]))[field] for name in names)
                 for field in BLOCK_FIELDS}
        values[stage] = {
            "1x1": total["1x1"] / total["3x3"],
            "5x5": total["5x5"] / total["3x3"],
            "pool": total["pool_proj"] / total["3x3"],
            "reduce_3x3": total["3x3_reduce"] / total["3x3"],
            "reduce_5x5": total["5x5_reduce"] / total["5x5"],
        }
    return values


#: `paper_values()`: the paper's per-stage ratios.
PAPER_VALUES = paper_values()

#: Hyperparameter names of one stage, in the order they are declared.
STAGE_PARAMS = ("1x1", "5x5", "pool", "reduce_3x3", "reduce_5x5")


class SpaceError(ValueError):
    """An invalid search-space setting; one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Ranges of the searched hyperparameters (all sampled on a grid).

    Attributes:
        min_width, max_width, width_step: The global `width` multiplier.
        branch_min, branch_max, branch_step: Channels of the 1x1, 5x5 and
            pool-projection branches per channel of the 3x3 branch.
        reduce_3x3_min, reduce_3x3_max, reduce_5x5_min, reduce_5x5_max,
        reduce_step: Reduction channels per channel of the 3x3 (5x5) convolution.
    """

    min_width: float = 0.25
    max_width: float = 1.0
    width_step: float = 0.015625
    branch_min: float = 0.125
    branch_max: float = 2.0
    branch_step: float = 0.125
    reduce_3x3_min: float = 0.25
    reduce_3x3_max: float = 1.0
    reduce_5x5_min: float = 0.125
    reduce_5x5_max: float = 1.0
    reduce_step: float = 0.125

    def __post_init__(self):
        for lo, hi, step, what in (
            (self.min_width, self.max_width, self.width_step, "width"),
            (self.branch_min, self.branch_max, self.branch_step, "branch ratio"),
            (self.reduce_3x3_min, self.reduce_3x3_max, self.reduce_step, "3x3 reduction"),
            (self.reduce_5x5_min, self.reduce_5x5_max, self.reduce_step, "5x5 reduction"),
        ):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       for v in (lo, hi, step)):
                raise SpaceError(f"the {what} range must be numbers; got {lo!r}..{hi!r} step {step!r}")
            if not (0 < lo <= hi and step > 0):
                raise SpaceError(
                    f"the {what} range needs 0 < min <= max and step > 0; got {lo:g}..{hi:g} step {step:g}"
                )
            if (hi - lo) / step > MAX_STEPS:
                raise SpaceError(
                    f"the {what} range {lo:g}..{hi:g} with step {step:g} has more than "
                    f"{MAX_STEPS} steps; use a larger step"
                )
            if abs((hi - lo) / step - round((hi - lo) / step)) > 1e-6:
                raise SpaceError(
                    f"the {what} range {lo:g}..{hi:g} is not a whole number of steps of {step:g}"
                )

    # ---- hyperparameters ------------------------------------------------------
    def ranges(self):
        """`{name: (min, max, step)}` of every searched hyperparameter, in declaration order."""
        out = {"width": (self.min_width, self.max_width, self.width_step)}
        for stage in STAGE_BLOCKS:
            for branch in ("1x1", "5x5", "pool"):
                out[f"stage{stage}_{branch}"] = (self.branch_min, self.branch_max, self.branch_step)
            out[f"stage{stage}_reduce_3x3"] = (self.reduce_3x3_min, self.reduce_3x3_max, self.reduce_step)
            out[f"stage{stage}_reduce_5x5"] = (self.reduce_5x5_min, self.reduce_5x5_max, self.reduce_step)
        return out

    def grid(self, name):
        """The values `name` can take, as a float array."""
        lo, hi, step = self.ranges()[name]
        n = int(round((hi - lo) / step))
        return np.round(lo + step * np.arange(n + 1), 10)

    def default_values(self):
        """The paper's per-stage ratios rounded onto the grid, at `min_width`."""
        values = {"width": self.min_width}
        for stage, paper in PAPER_VALUES.items():
            for param in STAGE_PARAMS:
                name = f"stage{stage}_{param}"
                grid = self.grid(name)
                values[name] = float(grid[np.argmin(np.abs(grid - paper[param]))])
        return values

    def declare(self, hp):
        """Declares every hyperparameter on a `keras_tuner.HyperParameters`.

        Returns:
            `{name: value}` for this trial (defaults: `default_values()`).
        """
        defaults = self.default_values()
        return {
            name: hp.Float(name, lo, hi, step=step, default=defaults[name])
            for name, (lo, hi, step) in self.ranges().items()
        }

    def to_dict(self):
        return dataclasses.asdict(self)


# ---- values -> blocks table ---------------------------------------------------


def split_channels(total, weights):
    """Splits `total` channels in proportion to `weights` (largest remainder).

    Vectorised: `weights` is `(n, k)`; returns `(n, k)` ints summing to `total`
    per row. Ties go to the earlier branch.
    """
    weights = np.asarray(weights, dtype=np.float64)
    raw = weights / weights.sum(axis=-1, keepdims=True) * total
    base = np.floor(raw + 1e-9)
    deficit = (total - base.sum(axis=-1)).astype(int)
    order = np.argsort(-(raw - base), axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable")
    return (base + (rank < deficit[:, None])).astype(np.int64)


def stage_rows(stage, branch_ratios, reduce_3x3, reduce_5x5):
    """Unscaled table rows of one stage's blocks, vectorised over `n` samples.

    Args:
        stage: 3, 4 or 5.
        branch_ratios: `(n, 3)`: 1x1, 5x5 and pool channels per 3x3 channel.
        reduce_3x3, reduce_5x5: `(n,)` reduction ratios.

    Returns:
        `(n, blocks in stage, 6)` int array, columns as in `BLOCK_FIELDS`.
    """
    r = np.asarray(branch_ratios, dtype=np.float64)
    weights = np.stack([r[:, 0], np.ones(len(r)), r[:, 1], r[:, 2]], axis=-1)  # 1x1, 3x3, 5x5, pool
    rows = []
    for block in STAGE_BLOCKS[stage]:
        c1, c3, c5, cp = np.moveaxis(split_channels(PAPER_OUTPUTS[block], weights), -1, 0)
        c3r = np.maximum(1, np.rint(np.asarray(reduce_3x3) * c3)).astype(np.int64)
        c5r = np.maximum(1, np.rint(np.asarray(reduce_5x5) * c5)).astype(np.int64)
        rows.append(np.stack([c1, c3r, c3, c5r, c5, cp], axis=-1))
    return np.stack(rows, axis=1)


def blocks_from_values(values):
    """The `blocks=` table (9 tuples of 6 ints, unscaled) for sampled values.

    Args:
        values: Dict with, for each stage N in 3, 4, 5, `stageN_1x1`,
            `stageN_5x5`, `stageN_pool` (channels per 3x3 channel) and
            `stageN_reduce_3x3`, `stageN_reduce_5x5`. Other keys are ignored.

    Returns:
        A tuple of 9 tuples `(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)`
        whose block outputs are exactly the paper's (`PAPER_OUTPUTS`).
    """
    table = []
    for stage in STAGE_BLOCKS:
        rows = stage_rows(
            stage,
            [[values[f"stage{stage}_{b}"] for b in ("1x1", "5x5", "pool")]],
            [values[f"stage{stage}_reduce_3x3"]],
            [values[f"stage{stage}_reduce_5x5"]],
        )[0]
        table += [tuple(int(c) for c in row) for row in rows]
    return tuple(table)


def shares(values, stage):
    """The four branch shares (1x1, 3x3, 5x5, pool) of a stage, summing to 1."""
    w = [values[f"stage{stage}_1x1"], 1.0, values[f"stage{stage}_5x5"], values[f"stage{stage}_pool"]]
    return tuple(x / sum(w) for x in w)
