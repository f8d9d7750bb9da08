"""Pretrained weights: the registry, where each comes from, and assigning them.

`PRETRAINED_WEIGHTS` is the registry, one entry per name, like torchvision's
weights enums: where the weights come from, the `GoogLeNet` arguments they fix
(`arguments`), their classes and input size, and their class names.

- "imagenet" is torchvision's `GoogLeNet_Weights.IMAGENET1K_V1` (69.778% top-1
  on ImageNet according to torchvision; ported from the original paper's
  network). The first use downloads the `.pth` with `keras.utils.get_file`
  into the Keras cache (`~/.keras/models`, or `$KERAS_HOME/models`), checks
  that its SHA-256 starts with the prefix in its name (torchvision's own
  check), converts it with `torch_weights`, and caches the converted arrays as
  `.npz` beside it, so later calls need neither the network nor PyTorch. Every
  file is written atomically: a failure leaves nothing half-written in the cache.
- "cifar10" is this project's GoogLeNet trained on CIFAR-10 (CIFAR stem, width
  0.5, 32x32; `benchmarks/results/cifar10_w05/`), shipped inside the package
  as float16 arrays (backbone and main head; the auxiliary heads were trained
  but are left out to keep the package small), so it loads with no network.
"""

import hashlib
import importlib.resources
import os

import numpy as np

from keras_googlenet import architecture, imagenet, torch_weights
from keras_googlenet._internal.fileio import atomic_path

#: The `GoogLeNet` arguments torchvision's GoogLeNet fixes (its weights need them).
_TORCHVISION_ARGUMENTS = {"stem": "imagenet", "width": 1.0, "batch_norm": True, "blocks": None,
                          **architecture.TORCHVISION_OPTIONS}

#: name -> where the weights come from and what they are. `arguments` are the
#: `GoogLeNet` arguments the weights fix (left unset, they take these values;
#: set otherwise, they are an error); `classes` and `input_size` are the
#: top's classes and the default (for the top: required) input side.
PRETRAINED_WEIGHTS = {
    "imagenet": {
        "url": "https://download.pytorch.org/models/googlenet-1378be20.pth",
        "file_name": "googlenet-1378be20.pth",
        "sha256_prefix": "1378be20",
        "cache_name": "googlenet_imagenet_1378be20.npz",
        "arguments": _TORCHVISION_ARGUMENTS,
        "classes": 1000,
        "input_size": None,  # any size from 64 (trained at 224)
        "class_names": None,  # keras_googlenet.imagenet's (Keras's class index)
        "aux_heads": "untrained",
    },
    "cifar10": {
        "package_file": "data/googlenet_cifar10_w05.npz",
        "arguments": {"stem": "cifar", "width": 0.5, "batch_norm": True, "blocks": None,
                      **architecture.PAPER_OPTIONS},
        "classes": 10,
        "input_size": 32,
        "class_names": "data/cifar10_classes.txt",
        "aux_heads": "absent",
    },
}


def weights_entry(weights):
    """The registry entry `weights` loads: its own, torchvision's for a `.pth`
    file, or None (random initialisation or a Keras weights file)."""
    if not isinstance(weights, (str, os.PathLike)):
        return None
    text = os.fspath(weights)
    if text in PRETRAINED_WEIGHTS:
        return PRETRAINED_WEIGHTS[text]
    if text.endswith(torch_weights.TORCH_SUFFIXES):
        return {"arguments": _TORCHVISION_ARGUMENTS, "classes": None, "input_size": None,
                "aux_heads": "untrained"}
    return None


def argument_conflicts(entry, arguments):
    """The arguments of `arguments` that the weights of registry `entry` cannot fit.

    The one check of the arguments pretrained weights fix, used by `GoogLeNet`
    (`weights.resolve_arguments`) and by a training run's `--weights`.

    Args:
        entry: A registry entry (`weights_entry`).
        arguments: `GoogLeNet` argument name -> value; `None` is unset (it fits
            anything) and names the entry does not fix are not checked.

    Returns:
        `(name, value, wanted)` for each conflicting argument, in `arguments`'
        order (`wanted` of `blocks` is the paper's table, which `None` stands for).
    """
    conflicts = []
    for name, value in arguments.items():
        if name not in entry["arguments"] or value is None:
            continue
        wanted = entry["arguments"][name]
        if name == "blocks":
            wanted = architecture.PAPER_BLOCKS
            fits = (architecture.is_block_table(value, numpy=True)
                    and architecture.validate_blocks(value) == wanted)
        else:
            fits = value == wanted
        if not fits:
            conflicts.append((name, value, wanted))
    return conflicts


def class_names(weights):
    """The class names of the top of pretrained `weights` (a registry name), in output order.

    Raises:
        ValueError: If `weights` is not a registry name, or its file is damaged.
    """
    entry = PRETRAINED_WEIGHTS.get(weights) if isinstance(weights, str) else None
    if entry is None:
        raise ValueError(
            f"`weights` must be one of {sorted(PRETRAINED_WEIGHTS)}. Received: weights={weights!r}")
    if entry["class_names"] is None:  # ImageNet: the names' one home is keras_googlenet.imagenet
        return imagenet.imagenet_class_names()
    text = (importlib.resources.files("keras_googlenet") / entry["class_names"]).read_text("utf-8")
    names = text.splitlines()  # one name per line
    if len(names) != entry["classes"] or not all(names):
        raise ValueError(f"keras_googlenet/{entry['class_names']} is damaged; reinstall the package")
    return names


def cifar10_class_names():
    """The 10 CIFAR-10 class names, in the order of `GoogLeNet(weights="cifar10")`'s outputs."""
    return class_names("cifar10")


#: Sub-folder of the Keras cache that holds the files.
CACHE_SUBDIR = "models"


def cache_dir():
    """`$KERAS_HOME/models`, else `~/.keras/models` (where `keras.utils.get_file` caches)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, CACHE_SUBDIR)


def keras_arrays(weights):
    """Our layer name -> arrays for `weights` (a registry name or a `.pth` path)."""
    # The arrays fit both image data formats: convolution kernels are (H, W, in,
    # out) in both, and `keras.layers.Flatten` flattens a channels_first map in
    # channels_last (H, W, C) order, so the auxiliary fc kernels do not change.
    name = os.fspath(weights)
    if name not in PRETRAINED_WEIGHTS:
        state = torch_weights.read_state_dict(name)
        return torch_weights.to_keras_arrays(state, name)
    entry = PRETRAINED_WEIGHTS[name]
    if "package_file" in entry:
        shipped = os.fspath(importlib.resources.files("keras_googlenet") / entry["package_file"])
        if not os.path.isfile(shipped):
            raise ValueError(f"The weights file of weights={name!r} is missing ({shipped}); "
                             "reinstall the package.")
        arrays = _read_npz(shipped, shipped=True)
        return {layer: [a.astype("float32") for a in values] for layer, values in arrays.items()}
    cached = os.path.join(cache_dir(), entry["cache_name"])
    if os.path.isfile(cached):
        arrays = _read_npz(cached)
    else:
        path = _download(name, entry)
        state = torch_weights.read_state_dict(path)
        arrays = torch_weights.to_keras_arrays(state, path)
        write_npz(cached, arrays)
    return arrays


def write_npz(path, arrays, dtype=None):
    """Writes `{layer: [arrays]}` as the `.npz` that `keras_arrays` reads, atomically.

    Args:
        path: The file to write (its folder is created).
        arrays: Layer name -> the layer's weight arrays, in `layer.weights` order.
        dtype: Store every array in this dtype (e.g. `"float16"`), or keep theirs.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{f"{layer}:{i}": np.asarray(a, dtype) for layer, values in arrays.items()
                           for i, a in enumerate(values)})


def _read_npz(path, shipped=False):
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                layer, index = key.rsplit(":", 1)
                arrays.setdefault(layer, {})[int(index)] = data[key]
    except (OSError, ValueError, KeyError, EOFError) as e:
        what = ("reinstall the package" if shipped
                else "delete it to download and convert again")
        raise ValueError(
            f"The weights file {path!r} is damaged ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); {what}."
        ) from e
    return {layer: [values[i] for i in sorted(values)] for layer, values in arrays.items()}


def _download(name, entry):
    """Downloads (or finds in the cache) the registry entry's file; checks its hash."""
    import keras

    url = entry["url"]
    # get_file falls back to /tmp/.keras when the cache folder does not exist yet.
    os.makedirs(cache_dir(), exist_ok=True)
    try:
        path = keras.utils.get_file(
            entry["file_name"], origin=url, cache_subdir=CACHE_SUBDIR,
            cache_dir=os.path.dirname(cache_dir()),
        )
    except Exception as e:  # get_file raises several types for network failures
        raise ValueError(
            f"Could not download weights={name!r} from {url} ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}). Download the file yourself and pass "
            "weights=PATH to the .pth file."
        ) from e
    digest = _sha256(path)
    if not digest.startswith(entry["sha256_prefix"]):
        os.remove(path)
        raise ValueError(
            f"The file downloaded from {url} has SHA-256 {digest}, which does not start with "
            f"{entry['sha256_prefix']!r}: refused and deleted (tampered or incomplete)."
        )
    return path


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_values(weights, source):
    """Refuses weight values that no trained network holds: NaN or infinite
    values, or a negative BatchNorm variance (`*/moving_variance`), which load
    without a word and then give NaN outputs.

    Args:
        weights: `(what, variable path, array)` triples; `what` names the
            variable in the message (e.g. a state-dict key).
        source: Where the weights come from (the `weights=` argument).

    Raises:
        ValueError: Naming the first bad variable.
    """
    for what, path, value in weights:
        array = np.asarray(value)
        if array.dtype.kind in "biu" or not array.size:
            continue
        array = array.astype(np.float32, copy=False)
        bad = array.size - np.count_nonzero(np.isfinite(array))
        if bad:
            raise ValueError(
                f"weights={os.fspath(source)!r}: {what} holds {bad} NaN or infinite value(s) of "
                f"{array.size}; the weights are damaged.")
        if path.endswith("moving_variance") and array.min() < 0:
            raise ValueError(
                f"weights={os.fspath(source)!r}: {what} is a BatchNorm variance and holds "
                f"negative values (smallest {array.min():g}); a variance is >= 0.")


def _describe(layer, index, weight):
    """How an error names a layer's `index`-th weight: its torchvision key where
    the layer has one, else the Keras variable path."""
    keys = torch_weights.torch_keys(layer.name) or []
    return f"key {keys[index]!r}" if index < len(keys) else f"variable {weight.path!r}"


def assign(model, arrays, *, source, heads=True):
    """Sets every weighted layer of `model` from `arrays`; with `heads=False`,
    all but its heads (`architecture.is_head_layer`): the backbone.

    Returns:
        The names of the layers set.

    Raises:
        ValueError: Naming the first layer that `arrays` lacks or whose shapes
            differ, or the first key whose values are damaged (`check_values`);
            values are checked before any layer is set.
    """
    layers = [layer for layer in model.layers if layer.weights
              and (heads or not architecture.is_head_layer(layer.name))]
    check_values(((_describe(layer, i, weight), weight.path, value)
                  for layer in layers
                  for i, (weight, value) in enumerate(zip(layer.weights,
                                                          arrays.get(layer.name) or []))),
                 source)
    loaded = []
    for layer in layers:
        values = arrays.get(layer.name)
        keys = torch_weights.torch_keys(layer.name) or [layer.name]
        if values is None:
            raise ValueError(
                f"weights={os.fspath(source)!r} have nothing for layer {layer.name!r} "
                f"(state-dict key {keys[0]!r})."
            )
        mine = [tuple(w.shape) for w in layer.weights]
        theirs = [tuple(v.shape) for v in values]
        if mine != theirs:
            i = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), 0)
            key = keys[i] if i < len(keys) else keys[0]
            raise ValueError(
                f"weights={os.fspath(source)!r}: key {key!r} does not fit layer "
                f"{layer.name!r} (converted shape {theirs[i] if i < len(theirs) else None}, "
                f"expected {mine[i]})."
            )
        layer.set_weights(values)
        loaded.append(layer.name)
    return loaded
