"""What `GoogLeNet(weights=...)` accepts, and loading it into the built model.

`weights` is one of:
    - `None`: random initialisation;
    - a key of `pretrained.PRETRAINED_WEIGHTS`: `"imagenet"` (torchvision's
      published weights, downloaded once and cached converted) or `"cifar10"`
      (shipped in the package);
    - a path to a torchvision GoogLeNet state dict (`.pth` / `.pt`);
    - a path to a Keras weights file (`.weights.h5` / `.keras`) saved from a
      GoogLeNet of the same configuration (a `model_config.json` beside it is
      checked against the requested one).

The first three kinds are "pretrained": their registry entry fixes the
arguments they need (`resolve_arguments` fills and checks them).
"""

import os
import warnings

from keras_googlenet import architecture, pretrained
from keras_googlenet.config import MODEL_CONFIG_FILE, GoogLeNetConfig
from keras_googlenet.torch_weights import TORCH_SUFFIXES

KERAS_SUFFIXES = (".weights.h5", ".keras")

#: What the arguments `resolve_arguments` fills mean when left unset (`None`)
#: without pretrained weights.
DEFAULT_ARGUMENTS = {"stem": "imagenet", "width": 1.0, "blocks": None, "classes": 1000,
                     **architecture.PAPER_OPTIONS}

#: The arguments `resolve_arguments` fills in or checks against pretrained weights.
RESOLVED_ARGUMENTS = (*DEFAULT_ARGUMENTS, "batch_norm", "include_top", "aux_logits", "input_shape")


def is_pretrained(weights):
    """Whether `weights` names pretrained weights (a registry key or a .pth path)."""
    return pretrained.weights_entry(weights) is not None


def resolve_arguments(weights, arguments, data_format="channels_last"):
    """`GoogLeNet`'s arguments with the unset ones filled in, checked against `weights`.

    Args:
        weights: `GoogLeNet`'s `weights` argument.
        arguments: The arguments pretrained weights may fix (`RESOLVED_ARGUMENTS`),
            `None` where unset.
        data_format: The model's image data format, which orders `input_shape`:
            `"channels_last"` (height, width, 3) or `"channels_first"` (3, height, width).

    Returns:
        `arguments` with every `None` of `DEFAULT_ARGUMENTS` and `aux_logits`
        resolved (and `input_shape` for weights with an input size, with the top).

    Raises:
        ValueError: If pretrained weights are asked for with an argument they
            cannot fit; the message names it.
    """
    entry = pretrained.weights_entry(weights)
    resolved = dict(arguments)
    if entry is None:
        for name, default in DEFAULT_ARGUMENTS.items():
            if resolved[name] is None:
                resolved[name] = default
        resolved["aux_logits"] = True if resolved["aux_logits"] is None else resolved["aux_logits"]
        return resolved
    what = f"weights={os.fspath(weights)!r}"
    conflicts = pretrained.argument_conflicts(entry, {n: resolved[n] for n in entry["arguments"]})
    if conflicts:
        name, value, wanted = conflicts[0]
        raise ValueError(f"{what} fit only {name}={wanted!r}. Received: {name}={value!r}")
    resolved.update(entry["arguments"])
    top = resolved["include_top"]
    if resolved["classes"] is None:
        resolved["classes"] = entry["classes"] or DEFAULT_ARGUMENTS["classes"]
    elif top and entry["classes"] is not None and resolved["classes"] != entry["classes"]:
        raise ValueError(
            f"{what} with include_top=True has {entry['classes']} classes; for other classes "
            "use include_top=False (features) or build the model with weights=None and call "
            f"keras_googlenet.load_backbone_weights. Received: classes={resolved['classes']!r}"
        )
    size = entry["input_size"]
    if size is not None:
        shape = resolved["input_shape"]
        wanted = (size, size, 3) if data_format == "channels_last" else (3, size, size)
        if shape is None and top:  # without the top, any size (keras.applications)
            resolved["input_shape"] = wanted
        elif top and tuple(shape) != wanted:
            raise ValueError(
                f"{what} with include_top=True classify {size}x{size} images: input_shape must "
                f"be {wanted} ({data_format}; use include_top=False for features at other "
                f"sizes). Received: input_shape={shape!r}"
            )
    aux = resolved["aux_logits"]
    if aux and top and entry["aux_heads"] == "absent":
        raise ValueError(
            f"{what} have no auxiliary heads (only the backbone and the main head are shipped). "
            "Received: aux_logits=True"
        )
    resolved["aux_logits"] = False if aux is None else aux
    return resolved


def check_weights_file(weights):
    """Raises ValueError unless the path `weights` is an existing regular file
    (saying what it is instead: missing, a directory, a device...)."""
    path = os.fspath(weights)
    if os.path.isdir(path):
        raise ValueError(
            "The weights path is a directory, not a weights file (a model folder loads with "
            f"keras_googlenet.load_model_folder). Received: weights={weights!r}")
    if not os.path.exists(path):
        raise ValueError(f"The weights file does not exist. Received: weights={weights!r}")
    if not os.path.isfile(path):
        raise ValueError(f"The weights path is not a regular file. Received: weights={weights!r}")


def validate_weights(weights, config):
    """Checks `weights` before the model is built; returns it (a path as str).

    Raises:
        ValueError: For an unknown string, a missing file, or a Keras weights
            file saved from a different configuration.
    """
    if weights is None:
        return None
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if path in pretrained.PRETRAINED_WEIGHTS:
            return path
        if os.path.isdir(path) or path.endswith(KERAS_SUFFIXES + TORCH_SUFFIXES):
            check_weights_file(weights)
            if path.endswith(KERAS_SUFFIXES):
                _check_saved_config(path, config)
            return path
    raise ValueError(
        f"`weights` must be None (random initialisation), one of "
        f"{sorted(pretrained.PRETRAINED_WEIGHTS)}, or the path to an existing "
        f"torchvision state dict ({', '.join(TORCH_SUFFIXES)}) or Keras weights file "
        f"({', '.join(KERAS_SUFFIXES)}). Received: weights={weights!r}"
    )


def load_weights(model, weights, config):
    """Loads validated `weights` into `model`, built from `config`."""
    if is_pretrained(weights):
        arrays = pretrained.keras_arrays(weights)
        pretrained.assign(model, arrays, source=weights)
        untrained = pretrained.weights_entry(weights)["aux_heads"] == "untrained"
        if config.include_top and config.aux_logits and untrained:
            warnings.warn(
                f"The auxiliary heads of weights={weights!r} are not trained (torchvision "
                "released them untrained); train them before relying on their outputs, or "
                "pass aux_logits=False.",
                stacklevel=3,
            )
        return
    try:
        # A mismatched file makes Keras warn ("Skipping nested container...")
        # before it raises: keep the warnings only if the load succeeds.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(weights)
    except Exception as e:  # Keras raises several types for a mismatched file.
        raise ValueError(
            f"Could not load weights into this GoogLeNet configuration. "
            f"Received: weights={weights!r} ({type(e).__name__}: {e})"
        ) from e
    pretrained.check_values(((f"variable {w.path!r}", w.path, w) for w in model.weights), weights)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def load_backbone_weights(model, weights="imagenet"):
    """Loads pretrained weights into every layer of `model` except its heads.

    For fine-tuning: build the model for your classes with torchvision's
    architecture options, then load the ImageNet backbone:

        >>> model = keras_googlenet.GoogLeNet(classes=5, **keras_googlenet.TORCHVISION_OPTIONS)
        >>> keras_googlenet.load_backbone_weights(model, "imagenet")

    Args:
        model: A GoogLeNet built with `architecture.TORCHVISION_OPTIONS`, the
            ImageNet stem, BatchNorm and width 1 (any classes and input size).
        weights: `"imagenet"` or the path to a torchvision GoogLeNet state dict.

    Returns:
        The names of the layers that were loaded.

    Raises:
        ValueError: If `weights` is not pretrained weights, or the model's
            layers do not fit them (the message names the first one).
    """
    if not is_pretrained(weights):
        raise ValueError(
            f"`weights` must be one of {sorted(pretrained.PRETRAINED_WEIGHTS)} or the path to "
            f"a torchvision GoogLeNet state dict ({', '.join(TORCH_SUFFIXES)}). "
            f"Received: weights={weights!r}"
        )
    if isinstance(weights, str) and weights not in pretrained.PRETRAINED_WEIGHTS:
        check_weights_file(weights)
    entry = pretrained.weights_entry(weights)
    differing = pretrained.argument_conflicts(entry, _visible_options(model))
    if differing:
        wanted = entry["arguments"]
        needed = ", ".join(f"{k}={wanted[k]!r}" for k in architecture.ARCHITECTURE_OPTIONS)
        raise ValueError(
            f"weights={os.fspath(weights)!r} need a GoogLeNet built with {needed}. "
            "Received a model with " + ", ".join(f"{k}={v!r}" for k, v, _ in differing)
        )
    arrays = pretrained.keras_arrays(weights)
    return pretrained.assign(model, arrays, source=weights, heads=False)


def _visible_options(model):
    """The architecture options `model`'s layers show (ceil_mode is invisible on
    even sides, where it equals "same" padding, so it is not checked)."""
    names = {layer.name for layer in model.layers}
    found = {
        "large_branch_kernel": model.get_layer("inception_3a_5x5").kernel_size[0],
        "stage5_pool_size": model.get_layer("pool4_3x3_s2").pool_size[0],
        "stem_padding": "symmetric" if "conv1_pad" in names else "same",
    }
    if "aux1_pool" in names:
        pool = model.get_layer("aux1_pool")
        adaptive = type(pool).__name__.startswith("Adaptive")
        # Small maps pool adaptively under "paper" too: only a fixed pool is telling.
        if not adaptive:
            found["aux_pool"] = "paper"
    return found


def _check_saved_config(path, config):
    """Compares `config` with the `model_config.json` saved beside a weights file.

    The fields that do not change the weights' shapes (name, dropout rates,
    classifier activation, input size, pooling, preprocessing) may differ; any
    other difference is an error naming the fields, instead of Keras's
    shape-mismatch message.
    """
    saved_path = os.path.join(os.path.dirname(os.path.abspath(path)), MODEL_CONFIG_FILE)
    if not os.path.isfile(saved_path):
        return
    saved = GoogLeNetConfig.load(saved_path)
    # Fields without weights of their own. (input_shape too: the auxiliary
    # heads always flatten a 4x4 map, so every input size fits the same weights.)
    free = {"name", "dropout", "aux_dropout", "classifier_activation", "input_shape",
            "pooling", "include_preprocessing"}
    differing = [f for f in config.differences(saved) if f not in free]
    if differing:
        values = ", ".join(
            f"{f}={getattr(config, f)!r} (saved: {getattr(saved, f)!r})" for f in differing
        )
        raise ValueError(
            f"The weights were saved from a different GoogLeNet configuration "
            f"({saved_path}). Received: {values}"
        )
