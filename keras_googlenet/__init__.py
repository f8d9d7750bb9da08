"""keras-googlenet: GoogLeNet (Inception v1, Szegedy et al. 2015) for Keras 3.

    >>> import keras_googlenet
    >>> model = keras_googlenet.GoogLeNet(stem="cifar", classes=10)
    >>> model.output_names
    ['aux1', 'aux2', 'main']
"""

from keras_googlenet.layers import BatchNormalization, LocalResponseNormalization
from keras_googlenet.model import (
    AUX_HEADS,
    BLOCK_FIELDS,
    BLOCK_NAMES,
    MIN_INPUT_SIZE,
    PAPER_BLOCKS,
    STAGES,
    GoogLeNet,
    inception_block,
    validate_blocks,
)
from keras_googlenet.utils import HEADS, count_flops, inference_model, preprocess_input

__version__ = "0.1.0"

__all__ = [
    "AUX_HEADS",
    "BLOCK_FIELDS",
    "BLOCK_NAMES",
    "BatchNormalization",
    "HEADS",
    "MIN_INPUT_SIZE",
    "PAPER_BLOCKS",
    "STAGES",
    "GoogLeNet",
    "LocalResponseNormalization",
    "count_flops",
    "inception_block",
    "inference_model",
    "preprocess_input",
    "validate_blocks",
]
