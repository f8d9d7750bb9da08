"""keras-googlenet: GoogLeNet (Inception v1, Szegedy et al. 2015) for Keras 3.

    >>> import keras_googlenet
    >>> model = keras_googlenet.GoogLeNet(stem="cifar", classes=10)
    >>> model.output_names == list(keras_googlenet.HEADS)  # aux1, aux2, main
    True

The architecture facts (`PAPER_BLOCKS`, `STAGES`, `AUX_HEADS`, `HEADS`, ...) and the
model configuration (`GoogLeNetConfig`) import without Keras; the names that need
Keras (`GoogLeNet`, the layers, `inference_model`, ...) are imported on first use.
"""

import importlib
import importlib.abc
import importlib.util
import sys

from keras_googlenet.architecture import (
    ARCHITECTURE_OPTIONS,
    AUX_HEADS,
    BLOCK_FIELDS,
    BLOCK_NAMES,
    DEFAULT_INPUT_SIZE,
    HEADS,
    LOSS_WEIGHTS,
    MAIN_HEAD,
    MIN_INPUT_SIZE,
    PAPER_BLOCKS,
    STAGES,
    STEMS,
    TORCHVISION_OPTIONS,
    validate_blocks,
)
from keras_googlenet.imagenet import decode_predictions, imagenet_class_names
from keras_googlenet.config import MODEL_CONFIG_FILE, GoogLeNetConfig

__version__ = "0.2.0"

# Public names that need Keras: module that defines each, imported on first access.
_LAZY = {
    "GoogLeNet": "keras_googlenet.model",
    "inception_block": "keras_googlenet.model",
    "BatchNormalization": "keras_googlenet.layers",
    "LocalResponseNormalization": "keras_googlenet.layers",
    "use_fused_kernel": "keras_googlenet.layers",
    "count_flops": "keras_googlenet.utils",
    "inference_model": "keras_googlenet.utils",
    "preprocess_input": "keras_googlenet.utils",
    "build_model": "keras_googlenet.model",
    "load_model_folder": "keras_googlenet.saving",
    "save_model_folder": "keras_googlenet.saving",
    "load_backbone_weights": "keras_googlenet.weights",
    "PRETRAINED_WEIGHTS": "keras_googlenet.pretrained",
    "cifar10_class_names": "keras_googlenet.pretrained",
}


# Python has no "run this after module X is imported" callback, and this package must
# import without Keras (0.07 s, not 6.7 s), yet `keras.saving.load_model` and KerasHub's
# `from_preset` find its classes only by registered name (Keras imports no module outside
# keras and keras_hub): so this finder runs each registering module right after its
# trigger is first imported, whichever of the two the program imports first.
_REGISTER_AFTER = {
    "keras": "keras_googlenet.layers",  # LocalResponseNormalization, legacy BatchNormalization
    "keras_hub": "keras_googlenet.hub",  # GoogLeNetBackbone, GoogLeNetImageClassifier, ...
}


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        module = _REGISTER_AFTER.pop(name, None)
        if module is None:
            return None
        spec = importlib.util.find_spec(name)  # the other finders (this one no longer answers)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_then_register(new_module):
                exec_module(new_module)
                importlib.import_module(module)

            spec.loader.exec_module = exec_then_register
        return spec


for _trigger in [t for t in _REGISTER_AFTER if t in sys.modules]:
    importlib.import_module(_REGISTER_AFTER.pop(_trigger))
if _REGISTER_AFTER:
    sys.meta_path.insert(0, _RegisterAfterImport())

# Submodules reachable as attributes of the package, imported on first access.
_SUBMODULES = ("hub",)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:  # the import sets the package's attribute
        return importlib.import_module(f"keras_googlenet.{name}")
    raise AttributeError(f"module 'keras_googlenet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = [
    "ARCHITECTURE_OPTIONS",
    "AUX_HEADS",
    "BLOCK_FIELDS",
    "BLOCK_NAMES",
    "BatchNormalization",
    "DEFAULT_INPUT_SIZE",
    "GoogLeNet",
    "GoogLeNetConfig",
    "HEADS",
    "LOSS_WEIGHTS",
    "LocalResponseNormalization",
    "MAIN_HEAD",
    "MIN_INPUT_SIZE",
    "MODEL_CONFIG_FILE",
    "PAPER_BLOCKS",
    "PRETRAINED_WEIGHTS",
    "STAGES",
    "STEMS",
    "TORCHVISION_OPTIONS",
    "build_model",
    "cifar10_class_names",
    "count_flops",
    "decode_predictions",
    "imagenet_class_names",
    "inception_block",
    "inference_model",
    "load_backbone_weights",
    "load_model_folder",
    "preprocess_input",
    "save_model_folder",
    "use_fused_kernel",
    "validate_blocks",
]
