"""Reading a torchvision GoogLeNet state dict and converting it to Keras arrays.

torchvision's `googlenet` names its modules `conv1`, `conv2`, `conv3`,
`inception3a.branch1` ... `aux1.fc2`, `fc`; ours are `conv1_7x7_s2`,
`conv2_3x3_reduce`, `conv2_3x3`, `inception_3a_1x1` ... `aux1`, `main`.
`TORCH_MODULES` maps one to the other, derived from the architecture's tables.
The conversion transposes convolution kernels (O, I, H, W) -> (H, W, I, O) and
dense kernels (out, in) -> (in, out), and reorders the auxiliary heads' first
fully connected layer, whose inputs PyTorch flattens as (C, H, W) and Keras
as (H, W, C) (`keras.layers.Flatten` does so in both image data formats).

Reading never runs pickled code: `torch.load(..., weights_only=True)`, which
reads both PyTorch's zip format and its older legacy format. Every tensor must
be dense, floating point and backed by the data the file holds (a stride-0
tensor may declare gigabytes it does not have) before anything is converted,
and every weight must have torchvision's shape (`TORCH_SHAPES`).
"""

import numpy as np

from keras_googlenet import architecture

#: The `pretrained` extra that installs PyTorch, named in errors.
PRETRAINED_EXTRA = 'pip install "keras-googlenet[pretrained]"'

#: File name endings of PyTorch state dicts.
TORCH_SUFFIXES = (".pth", ".pt")

_BRANCHES = {"1x1": "branch1", "3x3_reduce": "branch2.0", "3x3": "branch2.1",
             "5x5_reduce": "branch3.0", "5x5": "branch3.1", "pool_proj": "branch4.1"}


def _torch_modules():
    """Our layer name -> (torchvision module, kind), kind "conv" (conv + BN) or "dense"."""
    modules = {"conv1_7x7_s2": "conv1", "conv2_3x3_reduce": "conv2", "conv2_3x3": "conv3"}
    for block in architecture.BLOCK_NAMES:
        for field in architecture.BLOCK_FIELDS:
            modules[f"inception_{block}_{field}"] = f"inception{block}.{_BRANCHES[field]}"
    kinds = dict.fromkeys(modules, "conv")
    for head in architecture.AUX_HEADS:
        modules[f"{head}_conv"], kinds[f"{head}_conv"] = f"{head}.conv", "conv"
        modules[f"{head}_fc"], kinds[f"{head}_fc"] = f"{head}.fc1", "dense"
        modules[head], kinds[head] = f"{head}.fc2", "dense"
    modules[architecture.MAIN_HEAD], kinds[architecture.MAIN_HEAD] = "fc", "dense"
    return {name: (modules[name], kinds[name]) for name in modules}


#: Our layer name -> (torchvision module name, "conv" | "dense").
TORCH_MODULES = _torch_modules()

def _torch_shapes():
    """torchvision GoogLeNet's state-dict key -> shape (`None`: any size, the classes)."""
    shapes = {}

    def conv(module, filters, channels, kernel):
        shapes[f"{module}.conv.weight"] = (filters, channels, kernel, kernel)
        for key in _CONV_KEYS[1:]:
            shapes[f"{module}.{key}"] = (filters,)

    stem = architecture.STEM_CHANNELS["imagenet"]
    conv("conv1", stem[0], 3, 7)
    conv("conv2", stem[1], stem[0], 1)
    conv("conv3", stem[2], stem[1], 3)
    channels, outputs = stem[2], {}
    for block, row in zip(architecture.BLOCK_NAMES, architecture.PAPER_BLOCKS):
        c = dict(zip(architecture.BLOCK_FIELDS, row))
        kernels = {"3x3": 3, "5x5": 3}  # torchvision's "5x5" branch is 3x3
        inputs = {"3x3": c["3x3_reduce"], "5x5": c["5x5_reduce"]}
        for field in architecture.BLOCK_FIELDS:
            conv(f"inception{block}.{_BRANCHES[field]}", c[field],
                 inputs.get(field, channels), kernels.get(field, 1))
        channels = outputs[block] = architecture.block_output_channels(row)
    side = architecture.AUX_POOL_SIDE
    for head, block in architecture.AUX_HEADS.items():
        conv(f"{head}.conv", architecture.AUX_CONV_FILTERS, outputs[block], 1)
        fc = architecture.AUX_FC_UNITS
        shapes[f"{head}.fc1.weight"] = (fc, architecture.AUX_CONV_FILTERS * side * side)
        shapes[f"{head}.fc1.bias"] = (fc,)
        shapes[f"{head}.fc2.weight"], shapes[f"{head}.fc2.bias"] = (None, fc), (None,)
    shapes["fc.weight"], shapes["fc.bias"] = (None, channels), (None,)
    return shapes


_CONV_KEYS = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
_DENSE_KEYS = ("weight", "bias")
# Bookkeeping entries of BatchNorm that hold no weights.
_IGNORED_SUFFIX = ".num_batches_tracked"

#: torchvision GoogLeNet's state-dict key -> shape; `None` where any size fits
#: (the classes of the heads' last layers).
TORCH_SHAPES = _torch_shapes()


def read_state_dict(path):
    """Reads a `.pth` state dict without running pickled code.

    Returns:
        A dict of name -> float32 numpy array (BatchNorm's `num_batches_tracked`
        counters left out).

    Raises:
        ImportError: Without PyTorch (the message names the extra to install).
        ValueError: If the file is truncated, corrupt, or not a state dict, or
            holds a tensor that is not dense floating point, declares more
            elements than its data holds, or has a shape GoogLeNet's weights
            do not have (checked before anything is converted).
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"Reading the PyTorch weights file {path!r} needs PyTorch: {PRETRAINED_EXTRA}"
        ) from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad files
        message = " ".join(str(e).split())[:300]
        raise ValueError(
            f"Could not read {path!r} as a PyTorch state dict (truncated, corrupt, or not "
            f"saved with torch.save): {type(e).__name__}: {message}"
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint that wraps it
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"{path!r} is not a state dict (a mapping of names to tensors). "
            f"Received: {type(state).__name__}"
        )
    for key, value in state.items():
        _check_tensor(torch, key, value, path)
    return {k: v.detach().float().numpy() for k, v in state.items()
            if not k.endswith(_IGNORED_SUFFIX)}


def _check_tensor(torch, key, value, source):
    """Refuses a tensor that converting could not handle or would blow up in memory."""
    if value.layout != torch.strided or value.is_quantized:
        kind = "quantized" if value.layout == torch.strided else str(value.layout)
        problem = f"is a {kind} tensor; expected a dense floating-point one"
    elif key.endswith(_IGNORED_SUFFIX):
        problem = None if value.numel() <= 1 else f"has {value.numel()} elements; expected 1"
    elif not value.is_floating_point():
        problem = f"has dtype {value.dtype}; expected a floating-point tensor"
    elif value.numel() > value.untyped_storage().nbytes() // value.element_size():
        problem = (f"declares {value.numel()} elements ({tuple(value.shape)}) but its data "
                   f"holds {value.untyped_storage().nbytes() // value.element_size()}")
    else:
        expected = TORCH_SHAPES.get(key)
        fits = expected is None or (len(expected) == value.ndim and all(
            e is None or e == n for e, n in zip(expected, value.shape)))
        problem = None if fits else (
            f"has shape {tuple(value.shape)}; torchvision's GoogLeNet has "
            f"{tuple('any' if e is None else e for e in expected)}")
    if problem:
        raise ValueError(f"{source!r} is not a torchvision GoogLeNet state dict: key "
                         f"{key!r} {problem}.")


def to_keras_arrays(state, source):
    """Converts a torchvision GoogLeNet state dict to Keras arrays.

    The arrays fit both image data formats: `keras.layers.Flatten` flattens a
    channels_first map in (H, W, C) order too.

    Args:
        state: `read_state_dict`'s output.
        source: Where it came from, for error messages.

    Returns:
        A dict of our layer name (convolutions and their `_bn` layers apart) ->
        list of arrays in the layer's weight order.
        The auxiliary heads are included only if the state dict has them.

    Raises:
        ValueError: Naming the first missing, unexpected or misshapen key.
    """
    has_aux = any(k.startswith(tuple(f"{h}." for h in architecture.AUX_HEADS)) for k in state)
    expected = []
    for layer, (module, kind) in TORCH_MODULES.items():
        if module.split(".")[0] in architecture.AUX_HEADS and not has_aux:
            continue
        expected += [(layer, f"{module}.{key}", kind)
                     for key in (_CONV_KEYS if kind == "conv" else _DENSE_KEYS)]
    names = {key for _, key, _ in expected}
    missing = [key for key in (k for _, k, _ in expected) if key not in state]
    if missing:
        raise ValueError(
            f"{source!r} is not a torchvision GoogLeNet state dict: key {missing[0]!r} is "
            f"missing ({len(missing)} missing in all)."
        )
    extra = sorted(k for k in state if k not in names and not k.endswith(_IGNORED_SUFFIX))
    if extra:
        raise ValueError(
            f"{source!r} is not a torchvision GoogLeNet state dict: unexpected key {extra[0]!r} "
            f"({len(extra)} unexpected in all)."
        )
    arrays = {}
    for layer, key, kind in expected:
        value = state[key]
        rank = {"conv.weight": 4, "weight": 2}.get(_suffix(key, kind), 1)
        if value.ndim != rank:
            raise ValueError(
                f"{source!r}: key {key!r} has shape {tuple(value.shape)}; expected "
                f"{rank} dimensions."
            )
        if rank == 4:
            value = value.transpose(2, 3, 1, 0)
        elif rank == 2:
            value = value.T
            if layer in (f"{h}_fc" for h in architecture.AUX_HEADS):
                value = _chw_to_hwc_rows(value, key, source)
        # Keras has the convolution (`layer`) and its BatchNorm (`layer_bn`) apart.
        target = f"{layer}_bn" if _suffix(key, kind).startswith("bn.") else layer
        arrays.setdefault(target, []).append(np.ascontiguousarray(value, dtype="float32"))
    return arrays


def torch_keys(layer):
    """The state-dict keys of one of our layers, in its weight order (else [])."""
    base = layer[:-3] if layer.endswith("_bn") else layer
    if base not in TORCH_MODULES:
        return []
    module, kind = TORCH_MODULES[base]
    if kind == "dense":
        return [f"{module}.{k}" for k in _DENSE_KEYS]
    keys = _CONV_KEYS[1:] if layer.endswith("_bn") else _CONV_KEYS[:1]
    return [f"{module}.{k}" for k in keys]


def _suffix(key, kind):
    """`conv.weight`, `bn.bias`, ... for conv modules; `weight` / `bias` for dense ones."""
    parts = key.split(".")
    return ".".join(parts[-2:]) if kind == "conv" else parts[-1]


def _chw_to_hwc_rows(kernel, key, source):
    """Reorders a dense kernel's input rows from (C, H, W) to (H, W, C) order."""
    side = architecture.AUX_POOL_SIDE
    rows = kernel.shape[0]
    if rows % (side * side):
        raise ValueError(
            f"{source!r}: key {key!r} has {rows} inputs; expected a multiple of "
            f"{side * side} (a {side}x{side} map)."
        )
    channels = rows // (side * side)
    return kernel.reshape(channels, side, side, -1).transpose(1, 2, 0, 3).reshape(rows, -1)
