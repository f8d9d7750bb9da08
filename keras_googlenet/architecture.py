"""Every architecture fact of GoogLeNet, as plain data (no Keras, no framework).

Reference:
    Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.
    https://arxiv.org/abs/1409.4842

This module is the one home of the block table (the paper's Table 1), the
stages, where the auxiliary heads attach, the head names and loss weights, the
stems' input sizes and the channel-scaling rule. The Keras model
(`keras_googlenet.model`), the model configuration (`keras_googlenet.config`),
the tuner's search space and cost model, the training configuration and the
PyTorch reference of the benchmarks all import it; it imports only the standard
library, `keras_googlenet._internal.values` (the integer check) (and numpy, lazily, for
vectorised scaling), so reading a fact never
pulls in Keras.

To add a block type or change the table, this is the file to edit: the model,
the tuner and the PyTorch reference read it.
"""

import math

from keras_googlenet._internal.values import invalid_argument, is_int

#: Names of the nine Inception blocks, in order.
BLOCK_NAMES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")

#: Column names of a row of the block table.
BLOCK_FIELDS = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")

#: The columns that make up a block's output (concatenated in this order).
OUTPUT_FIELDS = ("1x1", "3x3", "5x5", "pool_proj")

#: Table 1 of the paper: for each block, (#1x1, #3x3 reduce, #3x3, #5x5 reduce,
#: #5x5, pool proj). A block's output has #1x1 + #3x3 + #5x5 + pool proj channels.
PAPER_BLOCKS = (
    (64, 96, 128, 16, 32, 32),  # 3a -> 256
    (128, 128, 192, 32, 96, 64),  # 3b -> 480
    (192, 96, 208, 16, 48, 64),  # 4a -> 512
    (160, 112, 224, 24, 64, 64),  # 4b -> 512
    (128, 128, 256, 24, 64, 64),  # 4c -> 512
    (112, 144, 288, 32, 64, 64),  # 4d -> 528
    (256, 160, 320, 32, 128, 128),  # 4e -> 832
    (256, 160, 320, 32, 128, 128),  # 5a -> 832
    (384, 192, 384, 48, 128, 128),  # 5b -> 1024
)

#: Blocks grouped by resolution; a 3x3/2 max pool sits between consecutive stages.
STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))

#: The same stages keyed by the paper's stage number (3, 4, 5).
STAGE_BLOCKS = {int(stage[0][0]): stage for stage in STAGES}

#: Auxiliary classifiers: head name -> the block whose output feeds it.
AUX_HEADS = {"aux1": "4a", "aux2": "4d"}

#: Name of the main classifier (and of its output).
MAIN_HEAD = "main"

#: Output heads of a three-head GoogLeNet, in output order.
HEADS = (*AUX_HEADS, MAIN_HEAD)


def is_head_layer(name):
    """Whether the layer called `name` belongs to an output head: it is named
    after the head (`main`, `aux1`) or starts with `<head>_` (`aux1_conv`).

    The other weighted layers are the backbone: what `load_backbone_weights`
    loads, and what a fine-tuning run's frozen phase freezes.
    """
    return name in HEADS or name.startswith(tuple(f"{head}_" for head in HEADS))


#: Loss weight of each head during training (Section 5 of the paper: the
#: auxiliary losses are added with weight 0.3).
LOSS_WEIGHTS = {"aux1": 0.3, "aux2": 0.3, MAIN_HEAD: 1.0}

#: The auxiliary head's layers (Section 5): 5x5/3 average pool to a 4x4 map,
#: 1x1 convolution with 128 filters, 1024-unit fully connected layer.
AUX_POOL_SIDE = 4
AUX_CONV_FILTERS = 128
AUX_FC_UNITS = 1024

#: Stage-4 map side from which the paper's 5x5/3 auxiliary pool gives 4x4; on
#: smaller maps the head pools adaptively to 4x4 (see `model.auxiliary_head`).
AUX_PAPER_POOL_MIN_SIDE = 14

#: Stems: "imagenet" is the paper's (total stride 8); "cifar" keeps the input
#: resolution for 32x32 images (a departure from the paper, see `model.py`).
STEMS = ("imagenet", "cifar")

#: Channels and kernel sizes of the stem's convolutions, per stem (the ImageNet
#: stem: conv 7x7/2, max pool 3x3/2, conv 1x1, conv 3x3, max pool 3x3/2).
STEM_CHANNELS = {"imagenet": (64, 64, 192), "cifar": (192,)}
STEM_KERNELS = {"imagenet": (7, 1, 3), "cifar": (3,)}

#: Smallest input side each stem accepts: the one at which the auxiliary heads
#: (stage 4) still see a 4x4 feature map.
MIN_INPUT_SIZE = {"imagenet": 64, "cifar": 16}

#: Input side used when neither `input_shape` nor `input_tensor` is given.
DEFAULT_INPUT_SIZE = {"imagenet": 224, "cifar": 32}


#: Options that choose between the paper's network (the first value, the default)
#: and the variant torchvision's GoogLeNet implements: option -> allowed values.
#:   large_branch_kernel: kernel of the Inception "5x5" branch (torchvision: 3x3).
#:   stage5_pool_size: the max pool before block 5a, stride 2 (torchvision: 2x2).
#:   stem_padding: conv1 7x7/2 with "same" padding (2 before, 3 after for even
#:       sides) or "symmetric" (3 on every side, PyTorch's padding=3).
#:   ceil_mode: stride-2 max pools round their output size up (PyTorch's
#:       ceil_mode=True); differs from "same" padding only on odd sides.
#:   aux_pool: auxiliary heads pool 5x5/3 ("paper", adaptively on small maps) or
#:       always adaptively to 4x4 ("adaptive", torchvision).
ARCHITECTURE_OPTIONS = {
    "large_branch_kernel": (5, 3),
    "stage5_pool_size": (3, 2),
    "stem_padding": ("same", "symmetric"),
    "ceil_mode": (False, True),
    "aux_pool": ("paper", "adaptive"),
}

#: The paper's values of `ARCHITECTURE_OPTIONS` (GoogLeNet's defaults).
PAPER_OPTIONS = {name: values[0] for name, values in ARCHITECTURE_OPTIONS.items()}

#: The values torchvision's GoogLeNet (and its pretrained IMAGENET1K_V1 weights)
#: needs; checked against torchvision's googlenet.py by tests/test_pretrained.py.
TORCHVISION_OPTIONS = {name: values[1] for name, values in ARCHITECTURE_OPTIONS.items()}


def scale_channels(channels, width):
    """Scales channel counts by `width`: round to nearest (half to even), at least 1.

    Args:
        channels: An int, or an array-like of ints (scaled element-wise with numpy).
        width: The width multiplier.

    Returns:
        An int for an int input, else an int64 numpy array.
    """
    if isinstance(channels, int):
        return max(1, int(round(channels * width)))
    import numpy as np

    scaled = np.rint(np.asarray(channels, dtype=np.float64) * width)
    return np.maximum(1, scaled).astype(np.int64)


def block_output_channels(row):
    """Output channels of a block with table row `row` (#1x1 + #3x3 + #5x5 + pool proj)."""
    fields = dict(zip(BLOCK_FIELDS, row))
    return sum(fields[f] for f in OUTPUT_FIELDS)


#: Output channels of each block in the paper's table (before `width`).
PAPER_OUTPUTS = {name: block_output_channels(row) for name, row in zip(BLOCK_NAMES, PAPER_BLOCKS)}


def stage_sides(stem, image_size):
    """Feature-map side of each Inception stage for a square input.

    Every stride-2 layer uses "same" padding, so each halves the side rounding up.

    Returns:
        `{3: side, 4: side, 5: side}`.
    """
    side = image_size
    if stem == "imagenet":
        for _ in range(3):  # conv1 7x7/2, pool1 3x3/2, pool2 3x3/2
            side = math.ceil(side / 2)
    sides = {}
    for number in STAGE_BLOCKS:
        sides[number] = side
        side = math.ceil(side / 2)
    return sides


def is_block_table(blocks, numpy=False):
    """Whether `blocks` is a block table: 9 rows of 6 integers >= 1.

    With `numpy=False` (a training run's settings, written to JSON) the table
    and its rows must be lists or tuples of Python ints; with `numpy=True`
    (`GoogLeNet`'s `blocks` argument) any iterables of ints or numpy integers.
    """
    if not numpy and not (isinstance(blocks, (list, tuple))
                          and all(isinstance(row, (list, tuple)) for row in blocks)):
        return False
    rows = _rows(blocks)
    return rows is not None and len(rows) == len(BLOCK_NAMES) and all(
        len(row) == len(BLOCK_FIELDS) and all(is_int(c, numpy=numpy) and c >= 1 for c in row)
        for row in rows
    )


def _rows(blocks):
    """`blocks` as a list of tuples, or None if it is not an iterable of iterables."""
    try:
        return [tuple(row) for row in blocks]
    except TypeError:
        return None


def validate_blocks(blocks):
    """Checks a block table (`is_block_table`, numpy integers too) and returns it
    as a tuple of 9 tuples of 6 ints.

    Raises:
        ValueError: If the table is not 9 rows of 6 positive integers.
    """
    rows = _rows(blocks)  # once: `blocks` may be an iterator
    if rows is None or not is_block_table(rows, numpy=True):
        raise invalid_argument(
            "blocks", f"{len(BLOCK_NAMES)} rows (blocks {', '.join(BLOCK_NAMES)}) of "
            f"{len(BLOCK_FIELDS)} positive integers ({', '.join(BLOCK_FIELDS)})", blocks)
    return tuple(tuple(int(c) for c in row) for row in rows)
