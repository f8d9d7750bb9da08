"""Training for keras-googlenet: `python -m training.cifar` and its Python API.

    from training import TrainConfig, train
    run = train(TrainConfig(data_dir="flowers/", name="flowers", epochs=10))

See `training.api`. The names below are imported on first use, so that
`import training` stays cheap (no Keras, no TensorFlow).
"""

import importlib

_LAZY = {"TrainConfig": "training.config", "default_model": "training.config",
         "Run": "training.api", "train": "training.api", "load_run": "training.api"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
