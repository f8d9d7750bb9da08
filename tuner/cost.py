"""Analytic cost of a GoogLeNet configuration, and compute budgets (no Keras needed).

`CostModel` counts the multiply-adds and parameters of the deployed main-head
network from its configuration alone, exactly as
`keras_googlenet.count_flops(inference_model(model))` and
`inference_model(model).count_params()` would (tests/test_architecture_facts.py
checks this against the Keras model and the PyTorch reference), so budgets are
checked without building a model. The network's shape (stem channels, stage
sides, channel scaling) comes from `keras_googlenet.architecture`.

`Budget` holds a search's limits (MFLOPs and/or parameters) and checks that
the search space (`tuner.space.SearchSpace`) can meet them.
"""

import dataclasses
import itertools
import math

import numpy as np

from keras_googlenet.architecture import (
    DEFAULT_INPUT_SIZE,
    STAGE_BLOCKS,
    STEM_CHANNELS,
    STEM_KERNELS,
    scale_channels,
    stage_sides,
)
from tuner.space import blocks_from_values, stage_rows

#: Parameters per output channel besides the kernel: BatchNorm's four vectors
#: (gamma, beta, moving mean, moving variance), or the convolution's bias.
_PER_CHANNEL = {True: 4, False: 1}


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

    @classmethod
    def of(cls, config):
        """The cost model of a `keras_googlenet.GoogLeNetConfig`'s network.

        Takes its stem, input side (a square, channels-last `input_shape`; the
        stem's default size when it is None), classes and `batch_norm`; `cost` then takes the
        block table and width.
        """
        size = DEFAULT_INPUT_SIZE[config.stem] if config.input_shape is None else config.input_shape[0]
        return cls(config.stem, int(size), config.classes, config.batch_norm)

    def _conv(self, k, cin, cout, positions):
        """(multiply-adds, params) of a convolution (+ BatchNorm or bias)."""
        weights = k * k * cin * cout
        return positions * weights, weights + _PER_CHANNEL[self.batch_norm] * cout

    def stem_cost(self, width):
        """(multiply-adds, params, output channels) of the stem.

        The ImageNet stem: conv 7x7/2, max pool 3x3/2, conv 1x1, conv 3x3 (then a
        max pool, free); the CIFAR stem: one conv 3x3/1.
        """
        s = self.image_size
        channels = [scale_channels(c, width) for c in STEM_CHANNELS[self.stem]]
        if self.stem == "cifar":
            sides = [s]
        else:
            h1 = math.ceil(s / 2)  # after conv1 7x7/2
            sides = [h1] + [math.ceil(h1 / 2)] * 2  # after pool1 3x3/2
        macs = params = 0
        cin = 3
        for k, cout, side in zip(STEM_KERNELS[self.stem], channels, sides):
            m, p = self._conv(k, cin, cout, side * side)
            macs, params, cin = macs + m, params + p, cout
        return macs, params, cin

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
        side = stage_sides(self.stem, self.image_size)[stage]
        hw = side * side
        c = scale_channels(rows, width)
        cin = np.broadcast_to(np.asarray(cin, dtype=np.int64), c.shape[:1]).copy()
        macs = np.zeros(c.shape[0], np.int64)
        params = np.zeros(c.shape[0], np.int64)
        per_channel = _PER_CHANNEL[self.batch_norm]
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
        for stage, names in STAGE_BLOCKS.items():
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
        for stage in STAGE_BLOCKS:
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
        for stage, i in zip(STAGE_BLOCKS, best[1]):
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
