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
`keras_googlenet.GoogLeNet` (unscaled; `width` is passed separately), and
`CostModel` counts the multiply-adds and parameters of the deployed main-head
network analytically, exactly as `count_flops(inference_model(model))` and
`inference_model(model).count_params()` would (the tests check this), so
budgets are checked without building a model.
"""

import dataclasses
import itertools
import math

import numpy as np

#: Names of the nine Inception blocks and the stages that group them (as in
#: keras_googlenet.BLOCK_NAMES / STAGES, repeated so this module needs no Keras).
BLOCK_NAMES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
STAGES = {3: ("3a", "3b"), 4: ("4a", "4b", "4c", "4d", "4e"), 5: ("5a", "5b")}

#: Output channels of each block in the paper's Table 1 (before `width`).
PAPER_OUTPUTS = {
    "3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512,
    "4d": 528, "4e": 832, "5a": 832, "5b": 1024,
}

#: The branches whose share of a block's output is searched, in table order.
BRANCHES = ("1x1", "3x3", "5x5", "pool")

#: Branch widths per 3x3 channel and reduction ratios of the paper (Table 1),
#: per stage, as ratios of channel totals over the stage's blocks. Off the
#: search grid: `SearchSpace.default_values` rounds them onto it.
PAPER_VALUES = {
    3: {"1x1": 192 / 320, "5x5": 128 / 320, "pool": 96 / 320,
        "reduce_3x3": 224 / 320, "reduce_5x5": 48 / 128},
    4: {"1x1": 848 / 1296, "5x5": 368 / 1296, "pool": 384 / 1296,
        "reduce_3x3": 640 / 1296, "reduce_5x5": 128 / 368},
    5: {"1x1": 640 / 704, "5x5": 256 / 704, "pool": 256 / 704,
        "reduce_3x3": 352 / 704, "reduce_5x5": 80 / 256},
}

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
            if abs((hi - lo) / step - round((hi - lo) / step)) > 1e-6:
                raise SpaceError(
                    f"the {what} range {lo:g}..{hi:g} is not a whole number of steps of {step:g}"
                )

    # ---- hyperparameters ------------------------------------------------------
    def ranges(self):
        """`{name: (min, max, step)}` of every searched hyperparameter, in declaration order."""
        out = {"width": (self.min_width, self.max_width, self.width_step)}
        for stage in STAGES:
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
    for block in STAGES[stage]:
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
    for stage in STAGES:
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


# ---- analytic cost ------------------------------------------------------------


def _scale(channels, width):
    """`keras_googlenet.model._scale`: round to nearest (half to even), at least 1."""
    return np.maximum(1, np.rint(np.asarray(channels, dtype=np.float64) * width)).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Multiply-adds and parameters of the deployed main-head GoogLeNet.

    Counts what `keras_googlenet.count_flops(inference_model(model))` and
    `inference_model(model).count_params()` count (convolutions and dense
    layers; BatchNorm's four vectors per channel), from the configuration alone.
    """

    stem: str = "cifar"
    image_size: int = 32
    classes: int = 10
    batch_norm: bool = True

    def _sides(self):
        s = self.image_size
        if self.stem == "cifar":
            s3 = s
        else:
            s3 = math.ceil(math.ceil(math.ceil(s / 2) / 2) / 2)
        s4 = math.ceil(s3 / 2)
        return {3: s3, 4: s4, 5: math.ceil(s4 / 2)}

    def _conv(self, k, cin, cout, positions):
        """(multiply-adds, params) of a convolution (+ BatchNorm or bias)."""
        weights = k * k * cin * cout
        extra = 4 * cout if self.batch_norm else cout
        return positions * weights, weights + extra

    def stem_cost(self, width):
        """(multiply-adds, params, output channels) of the stem."""
        s = self.image_size
        if self.stem == "cifar":
            c = int(_scale(192, width))
            macs, params = self._conv(3, 3, c, s * s)
            return macs, params, c
        a, b = int(_scale(64, width)), int(_scale(192, width))
        h1 = math.ceil(s / 2)
        h2 = math.ceil(h1 / 2)
        parts = [self._conv(7, 3, a, h1 * h1), self._conv(1, a, a, h2 * h2), self._conv(3, a, b, h2 * h2)]
        return sum(p[0] for p in parts), sum(p[1] for p in parts), b

    def stage_cost(self, stage, rows, width, cin):
        """Vectorised cost of one stage.

        Args:
            stage: 3, 4 or 5.
            rows: `(n, blocks, 6)` unscaled rows (`stage_rows`).
            width: The width multiplier.
            cin: Input channels of the stage's first block, scalar or `(n,)`.

        Returns:
            `(macs, params, cout)`, each an `(n,)` int64 array.
        """
        side = self._sides()[stage]
        hw = side * side
        c = _scale(rows, width)
        cin = np.broadcast_to(np.asarray(cin, dtype=np.int64), c.shape[:1]).copy()
        macs = np.zeros(c.shape[0], np.int64)
        params = np.zeros(c.shape[0], np.int64)
        per_channel = 4 if self.batch_norm else 1
        for j in range(c.shape[1]):
            c1, c3r, c3, c5r, c5, cp = (c[:, j, i] for i in range(6))
            weights = cin * (c1 + c3r + c5r + cp) + 9 * c3r * c3 + 25 * c5r * c5
            macs += hw * weights
            params += weights + per_channel * (c1 + c3r + c3 + c5r + c5 + cp)
            cin = c1 + c3 + c5 + cp
        return macs, params, cin

    def head_cost(self, cin):
        """(multiply-adds, params) of the main classifier (global pool, dense)."""
        cin = np.asarray(cin, dtype=np.int64)
        return cin * self.classes, cin * self.classes + self.classes

    def cost(self, blocks, width):
        """`(multiply-adds, params)` of `GoogLeNet(blocks=blocks, width=width)`'s main head."""
        macs, params, cin = self.stem_cost(width)
        table = np.asarray(blocks, dtype=np.int64)
        start = 0
        for stage, names in STAGES.items():
            rows = table[None, start:start + len(names)]
            m, p, cout = self.stage_cost(stage, rows, width, cin)
            macs, params, cin = macs + int(m[0]), params + int(p[0]), int(cout[0])
            start += len(names)
        m, p = self.head_cost(cin)
        return int(macs + int(m)), int(params + int(p))

    def cost_of_values(self, values):
        """`(multiply-adds, params)` for sampled hyperparameter values."""
        return self.cost(blocks_from_values(values), values["width"])

    def minimum(self, space, metric):
        """The cheapest configuration of `space` for one metric.

        Cost never decreases with `width` or with the reduction ratios (every
        channel count is a non-decreasing function of them), so the minimum has
        the smallest width and reductions. Over the branch ratios it is found
        exactly: stages interact only through the channel count passed from
        one stage to the next, so an exhaustive search per stage, keyed by that
        count (dynamic programming), covers every combination.

        Args:
            space: A `SearchSpace`.
            metric: `"macs"` or `"params"`.

        Returns:
            `(cost, values)`: the smallest cost and hyperparameter values reaching it.
        """
        index = {"macs": 0, "params": 1}[metric]
        width = space.min_width
        grid = space.grid("stage3_1x1")
        combos = np.array(list(itertools.product(grid, repeat=3)))  # (n, 3): 1x1, 5x5, pool
        stem = self.stem_cost(width)
        # state: channels entering the next stage -> (cost so far, chosen combo per stage)
        states = {stem[2]: (stem[index], [])}
        for stage in STAGES:
            r3, r5 = space.reduce_3x3_min, space.reduce_5x5_min
            rows = stage_rows(stage, combos, np.full(len(combos), r3), np.full(len(combos), r5))
            new_states = {}
            for cin, (so_far, chosen) in states.items():
                cost = self.stage_cost(stage, rows, width, cin)
                total = so_far + cost[index]
                for cout in np.unique(cost[2]):
                    mask = cost[2] == cout
                    i = int(np.flatnonzero(mask)[np.argmin(total[mask])])
                    if int(cout) not in new_states or total[i] < new_states[int(cout)][0]:
                        new_states[int(cout)] = (int(total[i]), chosen + [i])
            states = new_states
        best = None
        for cin, (so_far, chosen) in states.items():
            total = so_far + int(self.head_cost(cin)[index])
            if best is None or total < best[0]:
                best = (total, chosen)
        values = {"width": width}
        for stage, i in zip(STAGES, best[1]):
            for j, branch in enumerate(("1x1", "5x5", "pool")):
                values[f"stage{stage}_{branch}"] = float(combos[i, j])
            values[f"stage{stage}_reduce_3x3"] = space.reduce_3x3_min
            values[f"stage{stage}_reduce_5x5"] = space.reduce_5x5_min
        return best[0], values


# ---- budget -------------------------------------------------------------------


class BudgetError(ValueError):
    """A budget no configuration of the space meets; one line for the user."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """Compute budget of a search: MFLOPs (multiply-adds / 1e6) and/or parameters.

    Both limits apply to the deployed main-head network (`inference_model`),
    at the training resolution; `None` means no limit.
    """

    cost_model: CostModel
    max_mflops: float = None
    max_params: int = None

    def measure(self, values):
        """`(MFLOPs, params)` of sampled values."""
        macs, params = self.cost_model.cost_of_values(values)
        return macs / 1e6, params

    @property
    def limited(self):
        """Whether there is any limit."""
        return self.max_mflops is not None or self.max_params is not None

    def fits(self, values):
        mflops, params = self.measure(values)
        return self._fits(mflops, params)

    def largest_width(self, values, widths):
        """The largest of `widths` at which `values` fit, or `None`.

        Bisection: cost never decreases with width.
        """
        widths = sorted(float(w) for w in widths)
        lo, hi = 0, len(widths)  # widths[:lo] fit, widths[hi:] do not
        while lo < hi:
            mid = (lo + hi) // 2
            if self.fits({**values, "width": widths[mid]}):
                lo = mid + 1
            else:
                hi = mid
        return widths[lo - 1] if lo else None

    def _fits(self, mflops, params):
        return ((self.max_mflops is None or mflops <= self.max_mflops)
                and (self.max_params is None or params <= self.max_params))

    def describe(self):
        parts = []
        if self.max_mflops is not None:
            parts.append(f"<= {self.max_mflops:g} MFLOPs")
        if self.max_params is not None:
            parts.append(f"<= {self.max_params:,} parameters")
        return " and ".join(parts) or "none"

    def check_feasible(self, space, *, samples=2000, seed=0, lower_bound=False):
        """Raises `BudgetError` unless some configuration of `space` fits.

        With `lower_bound=True` the cost model is a lower bound (one class, before
        the data is read), and the message does not name a class count.

        Returns:
            The values of one configuration that fits (the cheapest by MFLOPs,
            or by parameters, or a random one), or `None` without a budget.
        """
        if self.max_mflops is None and self.max_params is None:
            return None
        min_macs, by_macs = self.cost_model.minimum(space, "macs")
        min_params, by_params = self.cost_model.minimum(space, "params")
        size = self.cost_model.image_size
        classes = "" if lower_bound else f", {self.cost_model.classes} classes"
        setting = f"{self.cost_model.stem} stem, {size}x{size}{classes}, width >= {space.min_width:g}"
        least = "at least " if lower_bound else ""
        if self.max_mflops is not None and min_macs / 1e6 > self.max_mflops:
            raise BudgetError(
                f"--max-mflops {self.max_mflops:g} is below the smallest configuration in the "
                f"search space ({least}{min_macs / 1e6:.2f} MFLOPs at {setting}); raise it or "
                "lower --min-width"
            )
        if self.max_params is not None and min_params > self.max_params:
            raise BudgetError(
                f"--max-params {self.max_params:,} is below the smallest configuration in the "
                f"search space ({least}{min_params:,} parameters at {setting}); raise it or "
                "lower --min-width"
            )
        for values in (by_macs, by_params):
            if self.fits(values):
                return values
        # Both limits are reachable alone; look for a configuration meeting both.
        rng = np.random.default_rng(seed)
        names = list(space.ranges())
        for _ in range(samples):
            values = {n: float(rng.choice(space.grid(n))) for n in names}
            values["width"] = space.min_width
            if self.fits(values):
                return values
        raise BudgetError(
            f"no configuration found within both budgets ({self.describe()}): the one with the "
            f"fewest MFLOPs has {self.measure(by_macs)[1]:,} parameters, the one with the fewest "
            f"parameters has {self.measure(by_params)[0]:.2f} MFLOPs"
        )
