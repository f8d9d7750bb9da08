"""`HyperGoogLeNet` and the budget-aware keras-tuner oracles and tuners.

    hypermodel = HyperGoogLeNet(config, num_classes=10, steps_per_epoch=15,
                                space=SearchSpace(), budget=budget)
    tuner = make_tuner("hyperband", hypermodel, directory="runs/search", max_trials=20)
    datasets = fan_out_datasets(build_datasets(config), HEADS)  # labels for every head
    tuner.search(datasets.train, validation_data=datasets.val, epochs=config.epochs)

The search space (what is sampled and how values become a `blocks` table) is
in `tuner.space`. Over-budget configurations never become trials: the oracles
below only propose configurations that fit the budget (checked analytically,
before any model is built), so no trial (and no `max_trials` slot) is spent on
them. `run_trial` checks again and fails the trial, before building or
training it, should one slip through.
"""

import keras_tuner as kt

from keras_googlenet.saving import build_model
from training.recipe import compile_model, setup_runtime
from tuner.cost import Budget, CostModel
from tuner.space import SearchSpace, blocks_from_values

#: The search objective: best-epoch held-out accuracy of the main head.
OBJECTIVE = kt.Objective("val_main_accuracy", "max")

#: Tuner names accepted by `make_tuner`.
TUNERS = ("hyperband", "bayesian", "random")

#: Without budget filling: rejection-sampling draws before falling back to
#: shrinking `width` (see `_BudgetedOracle`); and the most draws per proposal.
_REJECTION_DRAWS = 200
_MAX_DRAWS = 2000


class HyperGoogLeNet(kt.HyperModel):
    """A three-head `keras_googlenet.GoogLeNet` built from sampled channel ratios.

    The model is compiled with the `training.cifar` recipe (`compile_model`:
    SGD + Nesterov, warm-up and cosine decay over `config.epochs`, label
    smoothing, auxiliary loss weights), so it logs `val_main_accuracy`.
    The learning-rate schedule always spans `config.epochs`: Hyperband's
    shorter rounds see only its start, and a promoted round warm-starts from
    the previous round's weights with the schedule (and optimizer) restarted.

    Args:
        config: A resolved `training.config.TrainConfig` (data, model and
            recipe settings; its `width` is ignored, `width` is searched).
        num_classes: Number of classes.
        steps_per_epoch: Optimizer steps per epoch (for the schedule).
        space: The `SearchSpace`.
        budget: Optional `Budget`; used by `make_tuner`'s oracles and checks.
    """

    def __init__(self, config, num_classes, steps_per_epoch, space=None, budget=None,
                 name="googlenet", tunable=True):
        super().__init__(name=name, tunable=tunable)
        self.config = config
        self.num_classes = int(num_classes)
        self.steps_per_epoch = int(steps_per_epoch)
        self.space = space or SearchSpace()
        self.cost_model = CostModel.of(config.model_config(self.num_classes))
        self.budget = budget or Budget(self.cost_model)

    def values(self, hp):
        """Declares the search space on `hp` and returns this trial's values."""
        return self.space.declare(hp)

    def model_config(self, values):
        """The `keras_googlenet.GoogLeNetConfig` of sampled values.

        The run's network (`config.model_config`: classes, input size, stem,
        BatchNorm, dropout) with the sampled width and block table.
        """
        return self.config.model_config(self.num_classes).replace(
            width=float(values["width"]), blocks=blocks_from_values(values))

    def build(self, hp):
        values = self.values(hp)
        setup_runtime(self.config)  # dtype policy and seeds (after keras-tuner's clear_session)
        model = build_model(self.model_config(values))
        return compile_model(model, self.config, self.steps_per_epoch)

    def check_budget(self, hp):
        """Raises `keras_tuner.errors.FailedTrialError` if `hp` is over budget."""
        values = {**self.space.default_values(), **hp.values}
        if not self.budget.fits(values):
            mflops, params = self.budget.measure(values)
            raise kt.errors.FailedTrialError(
                f"over budget ({mflops:.2f} MFLOPs, {params:,} parameters; "
                f"budget {self.budget.describe()}): skipped without training"
            )


# ---- budget-aware oracles -------------------------------------------------------


class _BudgetedOracle:
    """Mixin for keras-tuner oracles: only proposes configurations within `budget`.

    With `fill = True` (the default; `--fill-budget`), every proposed
    configuration gets the largest `width` of the grid at which it fits the
    budget, so configurations are compared at (nearly) the same cost rather
    than mostly far below it: the oracle draws the channel ratios, the budget
    sets the width. With `fill = False`, proposals are drawn by rejection
    sampling (the oracle's own distribution restricted to the budget); when
    the budget is so tight that `_REJECTION_DRAWS` draws find nothing, further
    draws keep their ratios and lower `width` until they fit. Bayesian
    proposals from the Gaussian process are fitted the same way (or replaced
    by a random one).

    Set `oracle.budget` (a `tuner.space.Budget`), `oracle.space` and
    `oracle.fill` after construction; they are not part of the saved oracle
    state (the search folder's fingerprint makes a resumed search use the same).
    """

    budget = None
    space = None
    fill = True

    def _limited(self):
        return self.budget is not None and self.budget.limited

    def _fit_values(self, values):
        """`values` made to fit the budget by choosing `width`, or `None`."""
        if not self._limited():
            return values
        widths = self.space.grid("width")
        if self.fill:
            width = self.budget.largest_width(values, widths)
        elif self.budget.fits(values):
            return values
        else:
            width = self.budget.largest_width(values, widths[widths < values["width"]])
        return None if width is None else {**values, "width": width}

    def _random_values(self):
        if not self._limited():
            return super()._random_values()
        for draw in range(_MAX_DRAWS):
            values = super()._random_values()
            if values is None:  # the space is exhausted (too many duplicates)
                return None
            if not self.fill and self.budget.fits(values):
                return values
            if self.fill or draw >= _REJECTION_DRAWS:
                values = self._fit_values(values)
                if values is not None and not self._duplicate(values):
                    return values
        return None


class BudgetedRandomSearchOracle(_BudgetedOracle, kt.oracles.RandomSearchOracle):
    """`keras_tuner.oracles.RandomSearchOracle` within a compute budget."""


class BudgetedHyperbandOracle(_BudgetedOracle, kt.oracles.HyperbandOracle):
    """`keras_tuner.oracles.HyperbandOracle` within a compute budget.

    New configurations come from `_random_values` (budgeted); promoted ones
    are earlier trials' configurations, so they fit too.
    """


class BudgetedBayesianOptimizationOracle(_BudgetedOracle, kt.oracles.BayesianOptimizationOracle):
    """`keras_tuner.oracles.BayesianOptimizationOracle` within a compute budget."""

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        values = response.get("values")
        if response["status"] != "RUNNING" or not values:  # TrialStatus values are strings
            return response
        fitted = self._fit_values(values)
        if fitted is None or self._duplicate(fitted):
            fitted = self._random_values()
        if fitted is None:
            return {"status": "STOPPED", "values": None}
        return {"status": "RUNNING", "values": fitted}


# ---- tuners ---------------------------------------------------------------------


class _BudgetCheck:
    """Tuner mixin: fails an over-budget trial before building or training it."""

    def run_trial(self, trial, *args, **kwargs):
        self.hypermodel.check_budget(trial.hyperparameters)
        return super().run_trial(trial, *args, **kwargs)


class BudgetedTuner(_BudgetCheck, kt.Tuner):
    """`keras_tuner.Tuner` with the budget check (random and Bayesian search)."""


class BudgetedHyperband(_BudgetCheck, kt.Hyperband):
    """`keras_tuner.Hyperband` running a given (budgeted) Hyperband oracle."""

    def __init__(self, oracle, hypermodel, **kwargs):
        # kt.Hyperband.__init__ only builds a HyperbandOracle from its
        # arguments and then calls Tuner.__init__; pass ours instead. Its
        # run_trial (epochs per round) and _build_hypermodel (warm start from
        # the previous round's checkpoint) are kept.
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def make_tuner(kind, hypermodel, *, directory, project_name="tuner", max_trials=None,
               max_epochs=None, seed=0, overwrite=False, fill_budget=True,
               max_consecutive_failed_trials=3):
    """A keras-tuner tuner searching `hypermodel`'s space within its budget.

    Args:
        kind: `"hyperband"`, `"bayesian"` or `"random"`.
        hypermodel: A `HyperGoogLeNet`.
        directory: The search folder; the tuner's state is in `directory/project_name`.
        max_trials: Most trials (Hyperband counts each round of successive
            halving as a trial). Required for `"bayesian"` and `"random"`.
        max_epochs: Hyperband's most epochs per trial (default: `config.epochs`).
        seed: Oracle seed.
        overwrite: Start over instead of resuming a search found in the folder.
        fill_budget: With a budget, give every configuration the largest width
            that fits it (see `_BudgetedOracle`); else sample width freely
            within the budget.

    Returns:
        A `keras_tuner.Tuner`.
    """
    common = dict(objective=OBJECTIVE, seed=seed,
                  max_consecutive_failed_trials=max_consecutive_failed_trials)
    if kind == "hyperband":
        oracle = BudgetedHyperbandOracle(
            max_epochs=max_epochs or hypermodel.config.epochs,
            factor=3,
            # Iterate brackets until max_trials (a large int: the state is JSON).
            hyperband_iterations=10**6 if max_trials else 1,
            **common,
        )
        oracle.max_trials = max_trials  # honoured by Oracle.create_trial
        tuner_class = BudgetedHyperband
    elif kind == "bayesian":
        oracle = BudgetedBayesianOptimizationOracle(max_trials=max_trials, **common)
        tuner_class = BudgetedTuner
    elif kind == "random":
        oracle = BudgetedRandomSearchOracle(max_trials=max_trials, **common)
        tuner_class = BudgetedTuner
    else:
        raise ValueError(f"unknown tuner {kind!r}; choose one of {', '.join(TUNERS)}")
    oracle.budget = hypermodel.budget
    oracle.space = hypermodel.space
    oracle.fill = fill_budget
    return tuner_class(
        oracle=oracle,
        hypermodel=hypermodel,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
    )


__all__ = [
    "OBJECTIVE",
    "TUNERS",
    "BudgetedBayesianOptimizationOracle",
    "BudgetedHyperband",
    "BudgetedHyperbandOracle",
    "BudgetedRandomSearchOracle",
    "BudgetedTuner",
    "HyperGoogLeNet",
    "make_tuner",
]
