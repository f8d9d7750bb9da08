"""One block table, three implementations.

`keras_googlenet.architecture` is the one home of GoogLeNet's architecture facts.
Three things compute with them: the Keras model, the tuner's analytic cost model
(`tuner.cost.CostModel`) and the PyTorch reference of the benchmarks
(`benchmarks.torch_googlenet`). Here all three are built from the same
configurations (the paper's table and a table sampled by the tuner, widths 1.0
and 0.5, both stems, small images) and must agree: the same multiply-adds and
parameters for the deployed main-head network and for the three-head training
network, and the block outputs of the table. The tuner's paper ratios are
derived from the table (`tuner.space.PAPER_VALUES`) and must equal the values
that were once written by hand.
"""

import numpy as np
import pytest
import torch  # CI installs torch==2.13.0 (.ci/run); a missing torch fails these tests

import keras_googlenet as kg
from benchmarks.torch_googlenet import build_torch_googlenet, count_macs, keras_style_param_count
from keras_googlenet import architecture
from tuner.cost import CostModel
from tuner.space import PAPER_VALUES, SearchSpace, blocks_from_values


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """PyTorch's spinning OpenMP threads make its tiny forward passes take seconds on
    a busy machine; one thread takes milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_tuners_paper_values_are_derived_from_the_table():
    # The ratios tuner/space.py used to write by hand: per stage, channel totals over
    # the stage's blocks (1x1, 5x5 and pool projection per 3x3 channel; reductions
    # per channel of their convolution).
    assert PAPER_VALUES == {
        3: {"1x1": 192 / 320, "5x5": 128 / 320, "pool": 96 / 320,
            "reduce_3x3": 224 / 320, "reduce_5x5": 48 / 128},
        4: {"1x1": 848 / 1296, "5x5": 368 / 1296, "pool": 384 / 1296,
            "reduce_3x3": 640 / 1296, "reduce_5x5": 128 / 368},
        5: {"1x1": 640 / 704, "5x5": 256 / 704, "pool": 256 / 704,
            "reduce_3x3": 352 / 704, "reduce_5x5": 80 / 256},
    }


def _sampled_table():
    """A block table the tuner could propose (random values of its search space)."""
    rng = np.random.default_rng(3)
    space = SearchSpace()
    values = {name: float(rng.choice(space.grid(name))) for name in space.ranges()}
    table = blocks_from_values(values)
    assert table != architecture.PAPER_BLOCKS
    return table


@pytest.mark.parametrize("table", ["paper", "sampled"])
@pytest.mark.parametrize("width", [1.0, 0.5])
@pytest.mark.parametrize("stem, size", [("cifar", 16), ("imagenet", 64)])
def test_cost_model_torch_reference_and_keras_model_agree(table, width, stem, size):
    blocks = architecture.PAPER_BLOCKS if table == "paper" else _sampled_table()
    config = kg.GoogLeNetConfig(stem=stem, input_shape=(size, size, 3), classes=10,
                                width=width, blocks=blocks)
    rows = [architecture.scale_channels(row, width) for row in blocks]
    expected_outputs = {name: int(architecture.block_output_channels(row))
                        for name, row in zip(architecture.BLOCK_NAMES, rows)}

    # Keras: the three-head training model and the deployed main-head network.
    model = kg.build_model(config)
    deployed = kg.inference_model(model)
    keras_main = (kg.count_flops(deployed), deployed.count_params())
    keras_full = (kg.count_flops(model), model.count_params())
    keras_outputs = {name: model.get_layer(f"inception_{name}").output.shape[-1]
                     for name in architecture.BLOCK_NAMES}

    # The tuner's cost model counts the deployed network from the configuration alone.
    assert CostModel.of(config).cost(blocks, width) == keras_main

    # The PyTorch reference, with and without the auxiliary heads.
    torch.manual_seed(0)
    reference = build_torch_googlenet(config)
    main_only = build_torch_googlenet(config.replace(aux_logits=False))
    assert (count_macs(reference), keras_style_param_count(reference)) == keras_full
    assert (count_macs(main_only), keras_style_param_count(main_only)) == keras_main

    # Block outputs: #1x1 + #3x3 + #5x5 + pool proj of the (scaled) table rows.
    assert reference.block_channels() == keras_outputs == expected_outputs
