"""Tests of `python -m tuner.search`: the search space, budgets, the
hypermodel, end-to-end searches (resume, distributed chief/worker) and bad input.

The end-to-end searches train tiny models (width <= 0.125, 32 synthetic images,
one batch, one epoch) with `tf.config.run_functions_eagerly(True)`: on CPU,
tracing the three-head model's train function costs far more than running
one step eagerly, and the code paths under test (keras-tuner, the recipe,
the result files) are the same. TensorFlow backend only (CI runs this file
under the default backend).
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_tuner as kt  # noqa: E402
from training_helpers import last_wins  # noqa: E402

from benchmarks.workers import free_port  # noqa: E402

import keras_googlenet as kg  # noqa: E402
from training.config import TrainConfig, default_model  # noqa: E402
from tuner import search as cli  # noqa: E402
from tuner.hypermodel import HyperGoogLeNet, make_tuner  # noqa: E402
from keras_googlenet.architecture import STAGE_BLOCKS as STAGES  # noqa: E402
from tuner.cost import Budget, BudgetError, CostModel  # noqa: E402
from tuner.space import (  # noqa: E402
    PAPER_OUTPUTS,
    PAPER_VALUES,
    SearchSpace,
    blocks_from_values,
)

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,  # every test runs a search
    # The tuner drives TensorFlow's eager mode and tf.data.
    pytest.mark.backends("tensorflow"),
    # Eager mode does not apply to tf.data functions; TensorFlow warns about it.
    pytest.mark.filterwarnings("ignore:Even though the `tf.config.experimental_run_functions_eagerly`"),
    # scikit-learn: a Gaussian process fitted to two random scores is poorly determined.
    pytest.mark.filterwarnings("ignore:The optimal value found for dimension"),
]

#: Budget of the tiny searches: between the cheapest configuration at width
#: 0.0625 (~2.5 MFLOPs) and paper-like ratios at width 0.125 (~23 MFLOPs).
TINY_BUDGET = 12.0

#: A tiny search: 32 synthetic 32x32 images (one batch), one epoch per trial.
TINY = [
    "--data", "synthetic", "--synthetic-examples", "32", "--batch-size", "32",
    "--image-size", "32", "--stem", "cifar", "--min-width", "0.0625", "--max-width", "0.125",
    "--epochs", "1", "--tuner", "random", "--max-mflops", str(TINY_BUDGET), "--verbose", "0",
]

#: Runs `tuner.search.main` in a subprocess, eagerly (see the module docstring).
DRIVER = (
    "import sys, tensorflow as tf; tf.config.run_functions_eagerly(True); "
    "from tuner.search import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture
def eager():
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def _space():
    return SearchSpace(min_width=0.0625, max_width=0.125, width_step=0.0625)


def _random_values(space, rng):
    return {name: float(rng.choice(space.grid(name))) for name in space.ranges()}


def _hypermodel(space=None, budget_mflops=TINY_BUDGET, stem="cifar", size=32, batch_norm=True):
    config = TrainConfig(data="synthetic", model=default_model(stem=stem, batch_norm=batch_norm),
                         image_size=size, epochs=1).resolve()
    space = space or _space()
    cost = CostModel(stem, size, 10, batch_norm)
    return HyperGoogLeNet(config, 10, steps_per_epoch=1, space=space,
                          budget=Budget(cost, max_mflops=budget_mflops))


def _hp(values):
    hp = kt.HyperParameters()
    _space().declare(hp)
    hp.values.update(values)
    return hp


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# ---- search space: values -> blocks -------------------------------------------


@pytest.mark.parametrize("block, stage", [("3a", 3), ("4c", 4), ("5b", 5)])
def test_a_blocks_own_paper_ratios_reproduce_its_row_exactly(block, stage):
    c1, c3r, c3, c5r, c5, cp = kg.PAPER_BLOCKS[kg.BLOCK_NAMES.index(block)]
    values = {}
    for s in STAGES:  # every stage gets this block's ratios; check the block's own row
        values.update({f"stage{s}_1x1": c1 / c3, f"stage{s}_5x5": c5 / c3, f"stage{s}_pool": cp / c3,
                       f"stage{s}_reduce_3x3": c3r / c3, f"stage{s}_reduce_5x5": c5r / c5})
    table = blocks_from_values(values)
    assert table[kg.BLOCK_NAMES.index(block)] == (c1, c3r, c3, c5r, c5, cp)


@pytest.mark.parametrize("on_grid", [False, True])
def test_paper_like_ratios_give_close_to_the_papers_widths(on_grid):
    values = SearchSpace().default_values() if on_grid else {
        f"stage{s}_{k}": v for s, d in PAPER_VALUES.items() for k, v in d.items()
    }
    table = blocks_from_values(values)
    kg.validate_blocks(table)
    for name, row, paper in zip(kg.BLOCK_NAMES, table, kg.PAPER_BLOCKS):
        # Stage output widths stay the paper's (width then scales them).
        assert row[0] + row[2] + row[4] + row[5] == PAPER_OUTPUTS[name] == sum(paper[i] for i in (0, 2, 4, 5))
    start = 0
    for stage, names in STAGES.items():
        got = np.sum(table[start:start + len(names)], axis=0)
        want = np.sum(kg.PAPER_BLOCKS[start:start + len(names)], axis=0)
        if on_grid:  # ratios rounded to the 0.125 grid (e.g. 0.3 -> 0.25): totals within 20%
            np.testing.assert_allclose(got, want, rtol=0.2)
        else:  # exact stage ratios: each column total matches up to rounding (1 per block)
            assert np.all(np.abs(got - want) <= len(names)), (stage, got, want)
        start += len(names)


# ---- cost model and budgets ---------------------------------------------------


@pytest.mark.parametrize("stem, size, batch_norm", [("cifar", 24, True), ("imagenet", 64, False)])
def test_cost_model_matches_count_flops_and_count_params(stem, size, batch_norm):
    rng = np.random.default_rng(7)
    values = _random_values(SearchSpace(min_width=0.125, max_width=0.25), rng)
    model = kg.GoogLeNet(stem=stem, classes=10, input_shape=(size, size, 3), batch_norm=batch_norm,
                         width=values["width"], blocks=blocks_from_values(values))
    deployed = kg.inference_model(model)
    expected = (kg.count_flops(deployed), deployed.count_params())
    assert CostModel(stem, size, 10, batch_norm).cost_of_values(values) == expected


def test_minimum_of_the_space_is_exact():
    # A space small enough to enumerate (2 values per branch ratio, 2 widths; the
    # reductions at their minimum, where cost is lowest since it grows with them).
    space = SearchSpace(min_width=0.125, max_width=0.25, width_step=0.125, branch_min=0.5,
                        branch_max=1.0, branch_step=0.5, reduce_3x3_min=0.5, reduce_3x3_max=1.0,
                        reduce_5x5_min=0.5, reduce_5x5_max=1.0, reduce_step=0.5)
    cost = CostModel("cifar", 16, 10, True)
    stage_grid = [dict(zip(("1x1", "5x5", "pool"), c))
                  for c in np.array(np.meshgrid([0.5, 1.0], [0.5, 1.0], [0.5, 1.0])).T.reshape(-1, 3)]
    brute = {"macs": float("inf"), "params": float("inf")}
    for width, s3, s4, s5 in itertools.product((0.125, 0.25), stage_grid, stage_grid, stage_grid):
        values = {"width": width}
        for s, d in ((3, s3), (4, s4), (5, s5)):
            values.update({f"stage{s}_{k}": float(v) for k, v in d.items()})
            values.update({f"stage{s}_reduce_3x3": 0.5, f"stage{s}_reduce_5x5": 0.5})
        macs, params = cost.cost_of_values(values)
        brute = {"macs": min(brute["macs"], macs), "params": min(brute["params"], params)}
    for metric in ("macs", "params"):
        found, values = cost.minimum(space, metric)
        assert found == brute[metric]
        assert cost.cost_of_values(values)[metric == "params"] == found


def test_an_impossible_budget_is_refused_and_a_possible_one_is_not():
    cost, space = CostModel("cifar", 32, 10, True), _space()
    smallest = cost.minimum(space, "macs")[0] / 1e6
    with pytest.raises(BudgetError, match="below the smallest configuration"):
        Budget(cost, max_mflops=smallest * 0.99).check_feasible(space)
    values = Budget(cost, max_mflops=smallest).check_feasible(space)
    assert cost.cost_of_values(values)[0] / 1e6 <= smallest
    with pytest.raises(BudgetError, match="--max-params"):
        Budget(cost, max_params=1000).check_feasible(space)


# ---- oracles and hypermodel ---------------------------------------------------


@pytest.mark.parametrize("kind, fill", [("random", True), ("bayesian", True), ("hyperband", True),
                                        ("random", False)])
def test_oracles_only_propose_configurations_within_budget(kind, fill, tmp_path):
    if kind == "bayesian":
        import sklearn  # noqa: F401  (keras-tuner[bayesian], in the test extra)
    space = SearchSpace(min_width=0.0625, max_width=0.125, width_step=0.015625)
    hypermodel = _hypermodel(space)
    budget = hypermodel.budget
    rng = np.random.default_rng(0)
    over = np.mean([not budget.fits(_random_values(space, rng)) for _ in range(200)])
    assert over > 0.3  # the budget binds: unconstrained sampling would often exceed it
    tuner = make_tuner(kind, hypermodel, directory=str(tmp_path), max_trials=5, seed=3,
                       fill_budget=fill)
    oracle = tuner.oracle
    if kind == "bayesian":
        oracle.num_initial_points = 2  # reach the Gaussian-process proposals quickly
    widths = []
    for _ in range(5):
        trial = oracle.create_trial("tuner0")
        assert trial.status == "RUNNING"
        values = {**space.default_values(), **trial.hyperparameters.values}
        assert budget.fits(values)
        if fill:  # the largest width that fits: one grid step more would not
            assert values["width"] == space.max_width or not budget.fits(
                {**values, "width": values["width"] + space.width_step})
        widths.append(values["width"])
        oracle.update_trial(trial.trial_id, {"val_main_accuracy": float(rng.random())})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    # No trial was spent on a rejected configuration: 5 requests, 5 trials, all completed.
    assert len(oracle.trials) == 5
    assert all(t.status == "COMPLETED" for t in oracle.trials.values())
    assert oracle.create_trial("tuner0").status == "STOPPED"


def test_hypermodel_builds_valid_models_within_budget(tmp_path):
    hypermodel = _hypermodel()
    tuner = make_tuner("random", hypermodel, directory=str(tmp_path), max_trials=3, seed=11)
    for _ in range(3):
        trial = tuner.oracle.create_trial("tuner0")
        model = hypermodel.build(trial.hyperparameters)
        assert model.output_names == ["aux1", "aux2", "main"]
        assert model.optimizer is not None  # compiled with the training recipe
        deployed = kg.inference_model(model)
        flops = kg.count_flops(deployed)
        assert flops / 1e6 <= TINY_BUDGET
        assert (flops, deployed.count_params()) == hypermodel.budget.cost_model.cost_of_values(
            trial.hyperparameters.values)
        trial.status = "COMPLETED"
        tuner.oracle.update_trial(trial.trial_id, {"val_main_accuracy": 0.1})
        tuner.oracle.end_trial(trial)
    logits = model(np.zeros((1, 32, 32, 3), "float32"))
    assert [tuple(t.shape) for t in logits] == [(1, 10)] * 3


def test_an_over_budget_trial_fails_before_building():
    hypermodel = _hypermodel()
    values = {**hypermodel.space.default_values(), "width": 0.125}  # ~23 MFLOPs > 12
    with pytest.raises(kt.errors.FailedTrialError, match="over budget"):
        hypermodel.check_budget(_hp(values))


# ---- end-to-end searches ------------------------------------------------------


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished two-trial search: (directory, stdout)."""
    directory = tmp_path_factory.mktemp("search") / "s"
    tf.config.run_functions_eagerly(True)
    try:
        rc = _cli_main(TINY + ["--max-trials", "2", "--directory", str(directory)])
    finally:
        tf.config.run_functions_eagerly(False)
    assert rc == 0
    return directory


def test_two_trial_search_writes_results(searched):
    trials = json.loads((searched / "trials.json").read_text())
    assert len(trials) == 2 and all(t["status"] == "COMPLETED" for t in trials)
    assert all(t["mflops"] <= TINY_BUDGET for t in trials)
    assert all(0 <= t["score"] <= 1 for t in trials)
    assert "| trial | status | val_main_accuracy |" in (searched / "summary.md").read_text()
    from PIL import Image

    with Image.open(searched / "trials.png") as image:  # tuner.chart, from the same rows
        assert image.format == "PNG" and image.size == (900, 600)
    config = json.loads((searched / "best_config.json").read_text())
    assert {"blocks", "width", "stem", "classes", "input_shape"} <= set(config)
    best = json.loads((searched / "best_trial.json").read_text())
    assert best["score"] == max(t["score"] for t in trials)
    for t in trials:  # TensorBoard logs per trial
        assert list((searched / "logs" / t["trial_id"] / "execution0").glob("**/events.out.tfevents*"))


def test_best_config_rebuilds_the_same_architecture(searched):
    config = json.loads((searched / "best_config.json").read_text())
    best = json.loads((searched / "best_trial.json").read_text())
    rebuilt = kg.GoogLeNet(**config)
    searched_model = _hypermodel().build(_hp(best["values"]))
    assert rebuilt.count_params() == searched_model.count_params()
    # The trained trial's weights load into the rebuilt model: same layers, same shapes.
    rebuilt.load_weights(searched / "tuner" / f"trial_{best['trial_id']}" / "checkpoint.weights.h5")
    deployed = kg.inference_model(rebuilt)
    assert kg.count_flops(deployed) / 1e6 == pytest.approx(best["mflops"], abs=1e-3)


def test_the_search_folder_is_a_model_folder_of_the_best_trial(searched):
    config = json.loads((searched / "best_config.json").read_text())
    best = json.loads((searched / "best_trial.json").read_text())
    # model_config.json is the same configuration, as a GoogLeNetConfig document.
    assert kg.GoogLeNetConfig.load(searched / kg.MODEL_CONFIG_FILE).to_dict() == config
    loaded = kg.load_model_folder(searched)
    trial = kg.GoogLeNet(**config)
    trial.load_weights(searched / "tuner" / f"trial_{best['trial_id']}" / "checkpoint.weights.h5")
    assert len(loaded.weights) == len(trial.weights)
    for mine, theirs in zip(loaded.weights, trial.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine),
                                      keras.ops.convert_to_numpy(theirs))


def test_an_interrupted_search_resumes_and_train_best(searched, tmp_path, eager, capsys,
                                                      monkeypatch):
    directory = tmp_path / "s"
    shutil.copytree(searched, directory)
    before = {t["trial_id"]: t["score"] for t in json.loads((directory / "trials.json").read_text())}
    argv = TINY + ["--max-trials", "3", "--directory", str(directory)]

    # Interrupt the third trial (as Ctrl-C would) after it has started.
    def interrupted(self, hp, model, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(HyperGoogLeNet, "fit", interrupted)
    assert _cli_main(argv) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    oracle_state = json.loads((directory / "tuner" / "oracle.json").read_text())
    assert list(oracle_state["ongoing_trials"].values()) == ["2"]
    monkeypatch.undo()

    # The same command resumes: the interrupted trial runs, the finished ones do not.
    assert _cli_main(argv) == 0
    assert "(resumed, local)" in capsys.readouterr().out
    trials = {t["trial_id"]: t for t in json.loads((directory / "trials.json").read_text())}
    assert sorted(trials) == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" for t in trials.values())
    assert all(trials[i]["score"] == score for i, score in before.items())

    # Once more with --train-best: nothing left to search; the best is retrained.
    runs = tmp_path / "runs"
    assert _cli_main(argv + ["--train-best", "--train-epochs", "1", "--runs-dir", str(runs),
                            "--name", "best", "--no-export"]) == 0
    assert len(json.loads((directory / "trials.json").read_text())) == 3
    config = json.loads((directory / "best_config.json").read_text())
    assert json.loads((runs / "best" / "googlenet_config.json").read_text()) == config
    assert (runs / "best" / "results.json").exists()
    trained = keras.saving.load_model(runs / "best" / "model.keras")
    assert trained.count_params() == kg.GoogLeNet(**config).count_params()


# ---- bad input ----------------------------------------------------------------


def test_impossible_budget(tmp_path, capsys):
    argv = TINY[:-4] + ["--max-mflops", "0.5", "--verbose", "0", "--directory", str(tmp_path / "s")]
    assert _cli_main(argv) == 1
    assert "below the smallest configuration" in _one_line_error(capsys)
    assert not (tmp_path / "s").exists()
    assert _cli_main(TINY + ["--max-params", "100", "--directory", str(tmp_path / "s")]) == 1
    assert "--max-params 100 is below the smallest" in _one_line_error(capsys)


def test_unknown_tuner(tmp_path, capsys):
    assert _cli_main(TINY + ["--tuner", "grid", "--directory", str(tmp_path / "s")]) == 2
    assert "invalid choice: 'grid'" in _one_line_error(capsys)


def test_searched_width_is_not_a_flag(tmp_path, capsys):
    assert _cli_main(TINY + ["--width", "0.5", "--directory", str(tmp_path / "s")]) == 2
    assert "--min-width" in _one_line_error(capsys)


def test_missing_data(tmp_path, capsys):
    argv = TINY[2:] + ["--data-dir", str(tmp_path / "nowhere"), "--directory", str(tmp_path / "s")]
    assert _cli_main(argv) == 1
    assert "not found" in _one_line_error(capsys)


def test_existing_directory_with_a_different_space(searched, capsys):
    before = (searched / "trials.json").read_text()
    argv = TINY + ["--max-width", "0.25", "--max-trials", "2", "--directory", str(searched)]
    assert _cli_main(argv) == 1
    err = _one_line_error(capsys)
    assert "different search space" in err and "space.max_width" in err
    assert (searched / "trials.json").read_text() == before


# ---- distributed ----------------------------------------------------------------


def test_distributed_chief_and_worker(tmp_path):
    directory = tmp_path / "s"
    argv = TINY + ["--max-trials", "2", "--directory", str(directory)]
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(free_port()), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = {
        role: subprocess.Popen([sys.executable, "-c", DRIVER, *last_wins(argv)], cwd=REPO, text=True,
                               env={**env, "KERASTUNER_TUNER_ID": tuner_id},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for role, tuner_id in (("chief", "chief"), ("worker", "tuner0"))
    }
    out = {}
    try:
        for role, proc in procs.items():
            out[role] = proc.communicate(timeout=300)[0]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    assert procs["worker"].returncode == 0, out["worker"][-3000:]
    assert procs["chief"].returncode == 0, out["chief"][-3000:]
    assert "(joined, worker)" in out["worker"] and "no trials left" in out["worker"]
    assert "(new, chief)" in out["chief"] and "Best: trial" in out["chief"]
    trials = json.loads((directory / "trials.json").read_text())
    assert len(trials) == 2 and all(t["status"] == "COMPLETED" for t in trials)
    assert (directory / "best_config.json").exists()
    # The worker trained them: its trial checkpoints are in the shared folder.
    for t in trials:
        assert (directory / "tuner" / f"trial_{t['trial_id']}" / "checkpoint.weights.h5").exists()


def _cli_main(argv=None):
    return cli.main(None if argv is None else last_wins(list(argv)))
