"""Pretrained weights: where they come from, the cache, and assigning them.

`PRETRAINED_WEIGHTS` is the registry. "imagenet" is torchvision's
`GoogLeNet_Weights.IMAGENET1K_V1` (69.778% top-1 on ImageNet according to
torchvision; ported from the original paper's network). The first use
downloads the `.pth` with `keras.utils.get_file` into the Keras cache
(`~/.keras/models`, or `$KERAS_HOME/models`), checks that its SHA-256 starts
with the prefix in its name (torchvision's own check), converts it with
`torch_weights`, and caches the converted arrays as `.npz` beside it, so later
calls need neither the network nor PyTorch. Every file is written atomically:
a failure leaves nothing half-written in the cache.
"""

import hashlib
import os

import numpy as np

from keras_googlenet import architecture, torch_weights
from keras_googlenet.fileio import atomic_path

#: name -> where the weights come from and what they are.
PRETRAINED_WEIGHTS = {
    "imagenet": {
        "url": "https://download.pytorch.org/models/googlenet-1378be20.pth",
        "file_name": "googlenet-1378be20.pth",
        "sha256_prefix": "1378be20",
        "cache_name": "googlenet_imagenet_1378be20.npz",
        "classes": 1000,
    },
}

#: Sub-folder of the Keras cache that holds the files.
CACHE_SUBDIR = "models"


def cache_dir():
    """`$KERAS_HOME/models`, else `~/.keras/models` (where `keras.utils.get_file` caches)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, CACHE_SUBDIR)


def keras_arrays(weights):
    """Our layer name -> arrays for `weights` (a registry name or a `.pth` path)."""
    import keras

    channels_last = keras.config.image_data_format() == "channels_last"
    name = os.fspath(weights)
    if name not in PRETRAINED_WEIGHTS:
        state = torch_weights.read_state_dict(name)
        return torch_weights.to_keras_arrays(state, name, channels_last)
    entry = PRETRAINED_WEIGHTS[name]
    cached = os.path.join(cache_dir(), entry["cache_name"])
    if os.path.isfile(cached):
        arrays = _read_npz(cached)
    else:
        path = _download(name, entry)
        state = torch_weights.read_state_dict(path)
        arrays = torch_weights.to_keras_arrays(state, path, channels_last=True)
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        with atomic_path(cached) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{f"{layer}:{i}": a for layer, values in arrays.items()
                               for i, a in enumerate(values)})
    if not channels_last:  # the cache holds channels_last arrays
        arrays = _to_channels_first(arrays)
    return arrays


def _read_npz(path):
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                layer, index = key.rsplit(":", 1)
                arrays.setdefault(layer, {})[int(index)] = data[key]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(
            f"The converted weights cache {path!r} is damaged ({type(e).__name__}: {e}); "
            "delete it to download and convert again."
        ) from e
    return {layer: [values[i] for i in sorted(values)] for layer, values in arrays.items()}


def _to_channels_first(arrays):
    """The auxiliary fc kernels' rows back in (C, H, W) order for channels_first models."""
    side = architecture.AUX_POOL_SIDE
    out = dict(arrays)
    for head in architecture.AUX_HEADS:
        layer = f"{head}_fc"
        if layer in out:
            kernel = out[layer][0]
            rows = kernel.shape[0]
            channels = rows // (side * side)
            kernel = kernel.reshape(side, side, channels, -1).transpose(2, 0, 1, 3)
            out[layer] = [kernel.reshape(rows, -1), *out[layer][1:]]
    return out


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


def assign(model, arrays, *, source, heads=True):
    """Sets every weighted layer of `model` from `arrays`; with `heads=False`,
    all but its heads (`architecture.is_head_layer`): the backbone.

    Returns:
        The names of the layers set.

    Raises:
        ValueError: Naming the first layer that `arrays` lacks or whose shapes
            differ.
    """
    loaded = []
    for layer in model.layers:
        if not layer.weights or (not heads and architecture.is_head_layer(layer.name)):
            continue
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
