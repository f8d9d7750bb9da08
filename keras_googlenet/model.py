"""GoogLeNet (Inception v1) in Keras 3.

Reference:
    Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich.
    "Going Deeper with Convolutions". CVPR 2015. https://arxiv.org/abs/1409.4842

The architecture is data: `keras_googlenet.architecture` holds the paper's Table 1
(`PAPER_BLOCKS`, one channel tuple per Inception block), `STAGES` (which blocks
share a resolution) and where the heads attach; `inception_block` builds any row
of the table, and `GoogLeNet` walks the table. The arguments are validated by
`keras_googlenet.config.GoogLeNetConfig`, the model's one configuration object. Everything here is pure Keras 3
(`keras.layers`, `keras.ops`) and runs on the TensorFlow, JAX and PyTorch backends.
"""

import keras
from keras import layers

from keras_googlenet.architecture import (
    AUX_CONV_FILTERS,
    AUX_FC_UNITS,
    AUX_HEADS,
    AUX_PAPER_POOL_MIN_SIDE,
    AUX_POOL_SIDE,
    BLOCK_NAMES,
    MAIN_HEAD,
    PAPER_BLOCKS,
    STAGES,
    STEM_CHANNELS,
    STEM_KERNELS,
    scale_channels,
)
from keras_googlenet.config import GoogLeNetConfig
from keras_googlenet.inputs import channel_axis, channel_index, resolve_input_shape, spatial_shape
from keras_googlenet.layers import FlatHeNormal, LocalResponseNormalization, use_fused_kernel
from keras_googlenet.weights import (
    RESOLVED_ARGUMENTS, load_weights, resolve_arguments, validate_weights,
)

# Departure from the paper: BatchNorm uses momentum 0.9 (PyTorch's 0.1), not
# Keras's 0.99, so the moving statistics track short CIFAR-scale runs; epsilon
# 1e-3 as in torchvision's GoogLeNet.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-3


def conv_block(x, filters, kernel_size, strides=1, *, batch_norm=True, padding="same", name):
    """Convolution (`padding`, "same" by default) + optional BatchNorm + ReLU.

    With `batch_norm=True` the convolution has no bias (BatchNorm's offset
    replaces it); with `batch_norm=False` it has one, as in the 2014 network.
    The convolution layer is called `name`, the others `name_bn` and `name_relu`.
    """
    conv = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=not batch_norm,
        # Departure from the paper (which predates it): He initialisation, the
        # standard for ReLU networks trained from scratch.
        kernel_initializer=FlatHeNormal(),
        name=name,
    )
    x = conv(x)
    conv.kernel_initializer = keras.initializers.HeNormal()  # what the config records
    if batch_norm:
        # Keras's own layer (saved models load without this package), given a
        # fused training kernel on TensorFlow (1.18x-1.19x faster training on
        # CPU; see `use_fused_kernel`).
        x = use_fused_kernel(layers.BatchNormalization(
            axis=channel_axis(), momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=f"{name}_bn"
        ))(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def inception_block(x, channels, *, batch_norm=True, large_branch_kernel=5, name):
    """One Inception module (Figure 2b of the paper).

    Four branches concatenated on the channel axis: a 1x1 convolution; a 1x1
    reduction then a 3x3 convolution; a 1x1 reduction then a 5x5 convolution;
    a 3x3/1 max pool then a 1x1 projection.

    Args:
        x: Input feature map.
        channels: `(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)`,
            one row of the block table.
        batch_norm: Whether every convolution is followed by BatchNorm.
        large_branch_kernel: Kernel size of the "5x5" branch: 5 as in the paper,
            3 in torchvision's GoogLeNet (whose pretrained weights need it).
        name: Block name, e.g. `"inception_3a"`; the concatenation (the block's
            output) carries this name, the branches are `name_1x1`,
            `name_3x3_reduce`, `name_3x3`, `name_5x5_reduce`, `name_5x5`,
            `name_pool` and `name_pool_proj`.

    Returns:
        The block's output, with #1x1 + #3x3 + #5x5 + pool proj channels.
    """
    c1, c3r, c3, c5r, c5, cp = channels
    conv = lambda t, f, k, n: conv_block(t, f, k, batch_norm=batch_norm, name=f"{name}_{n}")
    branch1 = conv(x, c1, 1, "1x1")
    branch3 = conv(conv(x, c3r, 1, "3x3_reduce"), c3, 3, "3x3")
    # A real 5x5 convolution by default, as in the paper (torchvision's GoogLeNet
    # uses 3x3 here; the layer keeps its "5x5" name so names do not depend on it).
    branch5 = conv(conv(x, c5r, 1, "5x5_reduce"), c5, large_branch_kernel, "5x5")
    pooled = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = conv(pooled, cp, 1, "pool_proj")
    return layers.Concatenate(axis=channel_axis(), name=name)(
        [branch1, branch3, branch5, branch_pool]
    )


def auxiliary_head(
    x, classes, *, width, batch_norm, dropout, head_dtype, classifier_activation=None,
    pool="paper", name
):
    """An auxiliary classifier (Section 5 of the paper).

    5x5/3 average pool, 1x1 convolution with 128 filters, fully connected layer
    with 1024 units and ReLU, dropout 0.7, linear layer to `classes`.

    Departure from the paper for small inputs: the paper's 5x5/3 pool turns the
    14x14 stage-4 map of a 224x224 input into 4x4. When the map is smaller than
    14x14 (inputs under 224 with the ImageNet stem, under 28 with the CIFAR stem)
    that pool would leave less than 4x4, so the head pools adaptively to 4x4
    instead (`keras.layers.AdaptiveAveragePooling2D`) and keeps the paper's
    128 x 4 x 4 = 2048 inputs to the fully connected layer. With
    `pool="adaptive"` it always pools adaptively, as torchvision's GoogLeNet does.
    """
    spatial = spatial_shape(x)
    if pool == "paper" and min(spatial) >= AUX_PAPER_POOL_MIN_SIDE:
        x = layers.AveragePooling2D(5, strides=3, padding="valid", name=f"{name}_pool")(x)
    else:
        x = layers.AdaptiveAveragePooling2D(AUX_POOL_SIDE, name=f"{name}_pool")(x)
    filters = scale_channels(AUX_CONV_FILTERS, width)
    x = conv_block(x, filters, 1, batch_norm=batch_norm, name=f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(scale_channels(AUX_FC_UNITS, width), activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(classes, activation=classifier_activation, dtype=head_dtype, name=name)(x)


def GoogLeNet(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=None,
    classifier_activation=None,
    aux_logits=None,
    batch_norm=True,
    dropout=0.4,
    aux_dropout=0.7,
    stem=None,
    width=None,
    blocks=None,
    include_preprocessing=True,
    large_branch_kernel=None,
    stage5_pool_size=None,
    stem_padding=None,
    ceil_mode=None,
    aux_pool=None,
    name="googlenet",
):
    """Instantiates the GoogLeNet (Inception v1) architecture.

    Reference:
        Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.
        https://arxiv.org/abs/1409.4842

    Input convention: the model takes raw RGB pixels in [0, 255] (any float or
    integer dtype) and scales them to [-1, 1] itself with a `Rescaling` layer
    named `rescaling`, so the same model (and its SavedModel / TFLite exports)
    works on decoded images directly. `preprocess_input` is therefore the
    identity, kept for keras.applications compatibility. With
    `include_preprocessing=False` the rescaling layer is left out and inputs
    must already be in [-1, 1] (`x / 127.5 - 1`).

    With `include_top=True` and `aux_logits=True` the model has three outputs,
    named and ordered `aux1`, `aux2`, `main`, to be trained with loss weights
    0.3, 0.3, 1.0 as in the paper, e.g.
    `model.compile(loss=..., loss_weights={"aux1": 0.3, "aux2": 0.3, "main": 1.0})`.
    With `aux_logits=False` it has a single output, `main`. Use
    `inference_model(model)` to deploy only the main head.

    The output of every Inception block is a layer named `inception_3a` ...
    `inception_5b`, so features can be tapped with `model.get_layer(...)`.

    Departures from the paper, each also commented where it happens:
        - `batch_norm=True` (default) puts BatchNorm after every convolution
          (bias-free convolutions) and drops local response normalization;
          `batch_norm=False` is the 2014 network, with biases and LRN.
        - `stem="cifar"` replaces the paper's stem (total stride 8) with a single
          3x3 convolution to 192 channels and no pooling, so 32x32 inputs reach
          the Inception stages at 32x32, 16x16 and 8x8.
        - The auxiliary heads pool adaptively to 4x4 when the stage-4 feature
          map is smaller than 14x14 (see `auxiliary_head`).
        - Convolutions use He-normal initialisation.
        - Five architecture options (`large_branch_kernel`, `stage5_pool_size`,
          `stem_padding`, `ceil_mode`, `aux_pool`) select torchvision's variant
          of the network, which its pretrained ImageNet weights need
          (`keras_googlenet.TORCHVISION_OPTIONS`); the paper's values are the
          default when no pretrained weights are loaded.

    Args:
        include_top: Whether to include the classifier heads (the main head and,
            with `aux_logits`, the two auxiliary ones). Without them the model
            returns the `inception_5b` features (optionally pooled).
        weights: `None` (random initialisation), `"imagenet"` (torchvision's
            IMAGENET1K_V1 weights, downloaded once and cached converted in the
            Keras cache), `"cifar10"` (this project's CIFAR-10 model, shipped in
            the package: CIFAR stem, width 0.5, 10 classes, 32x32 input), the
            path to a torchvision GoogLeNet state dict (`.pth`/`.pt`;
            converting it needs PyTorch), or the path to a Keras weights file
            (`.weights.h5` or `.keras`) saved from a GoogLeNet of the same
            configuration. Pretrained weights choose the arguments they need
            (`keras_googlenet.PRETRAINED_WEIGHTS[name]["arguments"]`; for
            "imagenet" and `.pth` files torchvision's network,
            `TORCHVISION_OPTIONS`) and refuse values they cannot fit.
        input_tensor: Optional Keras tensor (output of `keras.Input()`) to use as
            the image input.
        input_shape: Optional shape tuple in the image data format
            (`keras.config.image_data_format()`), e.g. `(224, 224, 3)`, or
            `(3, 224, 224)` for channels_first. Defaults, with the top, to
            224x224 for the ImageNet stem and 32x32 for the CIFAR stem (or the
            pretrained weights' size); without the top, as in keras.applications,
            to any size: `(None, None, 3)`. Known sides must be at least 64
            (ImageNet stem) or 16 (CIFAR stem); they may be `None` when there
            are no auxiliary heads.
        pooling: Feature pooling when `include_top=False`: `None` (4D feature
            map), `"avg"` or `"max"` (2D). With `include_top=True` only `None`
            or `"avg"` (what the head does anyway) are accepted.
        classes: Number of classes, at least 1. `None`: 1000, or the
            pretrained weights' classes.
        classifier_activation: Activation of the classifier outputs. `None`
            (default) returns logits, so losses use `from_logits=True`;
            `"softmax"` returns probabilities.
        aux_logits: Whether to add the two auxiliary classifiers after 4a and
            4d. Only used with `include_top=True`. `None` (default): True, except
            with pretrained weights (one output, as keras.applications models
            have): torchvision's released auxiliary heads are untrained
            (passing True keeps them, with a warning), and "cifar10" ships
            without them (True is an error).
        batch_norm: BatchNorm after every convolution (default), or the 2014
            network with LRN.
        dropout: Dropout rate before the main classifier (paper: 0.4).
        aux_dropout: Dropout rate in the auxiliary heads (paper: 0.7).
        stem: `"imagenet"` (the paper's) or `"cifar"` (for 32x32 inputs).
            `None`: "imagenet", or what the pretrained weights need.
        width: Multiplier applied to every channel count (stem, blocks, auxiliary
            heads); counts are rounded to the nearest integer, at least 1.
            `None`: 1.0, or what the pretrained weights need.
        blocks: Table of the nine Inception blocks' channel tuples, rows in the
            order of `BLOCK_NAMES`, columns as in `BLOCK_FIELDS`. Defaults to the
            paper's Table 1 (`PAPER_BLOCKS`). `width` applies on top of it.
        include_preprocessing: Whether the model scales raw [0, 255] pixels to
            [-1, 1] itself (default) or expects scaled inputs.
        large_branch_kernel: Kernel of the Inception "5x5" branch: 5 (paper)
            or 3 (torchvision). `None`: 3 with pretrained weights, else 5.
        stage5_pool_size: Size of the stride-2 max pool before block 5a: 3
            (paper) or 2 (torchvision). `None`: as above.
        stem_padding: Padding of conv1 7x7/2: `"same"` or `"symmetric"` (3 on
            every side, torchvision). `None`: as above.
        ceil_mode: Whether the stride-2 max pools round their output size up
            like PyTorch's `ceil_mode=True` (torchvision) instead of using "same"
            padding; the two differ only on odd feature-map sides. `None`: as above.
        aux_pool: `"paper"` (5x5/3 average pool, adaptive on small maps) or
            `"adaptive"` (always adaptive to 4x4, torchvision). `None`: as above.
        name: Model name.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: For any invalid argument; the message names the value received.
    """
    # The keyword arguments make the one configuration object; the network is
    # built from it alone.
    config = googlenet_config(
        weights, include_top=include_top, input_shape=input_shape, pooling=pooling,
        classes=classes, classifier_activation=classifier_activation, aux_logits=aux_logits,
        batch_norm=batch_norm, dropout=dropout, aux_dropout=aux_dropout, stem=stem, width=width,
        blocks=blocks, include_preprocessing=include_preprocessing,
        large_branch_kernel=large_branch_kernel, stage5_pool_size=stage5_pool_size,
        stem_padding=stem_padding, ceil_mode=ceil_mode, aux_pool=aux_pool, name=name)
    return _build(config, weights, input_tensor)


def googlenet_config(weights=None, **arguments):
    """The validated `GoogLeNetConfig` of `GoogLeNet(weights=weights, **arguments)`.

    Pretrained weights choose the arguments they need (and refuse values they
    cannot fit); otherwise unset (`None`) arguments take their defaults (the
    paper's).

    Args:
        weights: `GoogLeNet`'s `weights` argument.
        **arguments: `GoogLeNet`'s other arguments, except `input_tensor`.

    Returns:
        A validated `GoogLeNetConfig`.

    Raises:
        ValueError: For any invalid argument; the message names the value received.
    """
    fixed = {name: arguments.pop(name) for name in RESOLVED_ARGUMENTS}
    fixed = resolve_arguments(weights, fixed, data_format=keras.config.image_data_format())
    return GoogLeNetConfig(**arguments, **fixed).validate()


def build_model(config, weights=None, input_tensor=None):
    """Builds the network that `config` describes.

    Args:
        config: A `GoogLeNetConfig`.
        weights: Optional weights, as for `GoogLeNet`; they must fit `config`.
        input_tensor: Optional Keras tensor, as for `GoogLeNet`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: If `config` is not a `GoogLeNetConfig`, is invalid, or does
            not fit `weights`; the message names the value.
    """
    if not isinstance(config, GoogLeNetConfig):
        raise ValueError(f"`config` must be a GoogLeNetConfig. Received: config={config!r}")
    return _build(googlenet_config(weights, **config.kwargs()), weights, input_tensor)


def _build(config, weights, input_tensor):
    """The network of a validated `config`, with `weights` loaded."""
    cfg = config
    pooling, classifier_activation, name = cfg.pooling, cfg.classifier_activation, cfg.name
    include_top, aux_logits, batch_norm = cfg.include_top, cfg.aux_logits, cfg.batch_norm
    classes, width, dropout, aux_dropout = cfg.classes, cfg.width, cfg.dropout, cfg.aux_dropout
    include_preprocessing, input_shape, stem = cfg.include_preprocessing, cfg.input_shape, cfg.stem
    blocks = PAPER_BLOCKS if config.blocks is None else config.blocks
    weights = validate_weights(weights, config)

    input_shape = resolve_input_shape(input_shape, input_tensor, stem, include_top)
    spatial = spatial_shape(input_shape, batch=False)
    channels = input_shape[channel_index()]
    if weights is not None and channels != 3:
        raise ValueError(
            "Loading `weights` needs RGB inputs with 3 channels. "
            f"Received: input_shape={input_shape}"
        )
    if include_top and aux_logits and None in spatial:
        raise ValueError(
            "The auxiliary heads flatten a 4x4 feature map, so they need a static "
            "input size (or pass aux_logits=False). "
            f"Received: input_shape={input_shape}"
        )

    # ---- inputs and preprocessing -----------------------------------------
    if input_tensor is None:
        img_input = layers.Input(shape=input_shape, name="image")
    elif not keras.backend.is_keras_tensor(input_tensor):
        img_input = layers.Input(tensor=input_tensor, shape=input_shape, name="image")
    else:
        img_input = input_tensor
    x = img_input
    if include_preprocessing:
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(x)

    # ---- stem ---------------------------------------------------------------
    w = lambda c: scale_channels(c, width)
    if stem == "imagenet":
        c1, c2r, c2 = STEM_CHANNELS["imagenet"]
        k1, k2r, k2 = STEM_KERNELS["imagenet"]
        padding = "same"
        if cfg.stem_padding == "symmetric":  # torchvision: PyTorch's padding=3, then a valid conv
            x = layers.ZeroPadding2D(k1 // 2, name="conv1_pad")(x)
            padding = "valid"
        x = conv_block(x, w(c1), k1, strides=2, batch_norm=batch_norm, padding=padding,
                       name="conv1_7x7_s2")
        x = _max_pool_s2(x, 3, cfg.ceil_mode, name="pool1_3x3_s2")
        if not batch_norm:
            x = LocalResponseNormalization(name="pool1_norm1")(x)
        x = conv_block(x, w(c2r), k2r, batch_norm=batch_norm, name="conv2_3x3_reduce")
        x = conv_block(x, w(c2), k2, batch_norm=batch_norm, name="conv2_3x3")
        if not batch_norm:
            x = LocalResponseNormalization(name="conv2_norm2")(x)
        x = _max_pool_s2(x, 3, cfg.ceil_mode, name="pool2_3x3_s2")
    else:
        # Departure from the paper: the CIFAR stem keeps the input resolution
        # (one 3x3 convolution to 192 channels, no pooling) so that 32x32
        # images reach the Inception stages at 32/16/8 rather than 4/2/1.
        (c,), (k,) = STEM_CHANNELS["cifar"], STEM_KERNELS["cifar"]
        x = conv_block(x, w(c), k, batch_norm=batch_norm, name="stem_conv_3x3")

    # ---- Inception stages and auxiliary heads -------------------------------
    head_dtype = _head_dtype()
    table = dict(zip(BLOCK_NAMES, blocks))
    aux_outputs = {}
    for stage_index, stage in enumerate(STAGES):
        if stage_index > 0:
            # The last stage's pool is 2x2 in torchvision (`stage5_pool_size`);
            # its layer keeps the paper's name.
            size = cfg.stage5_pool_size if stage_index == len(STAGES) - 1 else 3
            x = _max_pool_s2(x, size, cfg.ceil_mode, name=f"pool{stage_index + 2}_3x3_s2")
        for block in stage:
            x = inception_block(
                x,
                [w(c) for c in table[block]],
                batch_norm=batch_norm,
                large_branch_kernel=cfg.large_branch_kernel,
                name=f"inception_{block}",
            )
            for head, source in AUX_HEADS.items():
                if source == block and include_top and aux_logits:
                    aux_outputs[head] = auxiliary_head(
                        x,
                        classes,
                        width=width,
                        batch_norm=batch_norm,
                        dropout=aux_dropout,
                        head_dtype=head_dtype,
                        classifier_activation=classifier_activation,
                        pool=cfg.aux_pool,
                        name=head,
                    )

    # ---- main head ----------------------------------------------------------
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        main = layers.Dense(
            classes, activation=classifier_activation, dtype=head_dtype, name=MAIN_HEAD
        )(x)
        outputs = [*aux_outputs.values(), main]
    else:
        if pooling == "avg":
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        elif pooling == "max":
            x = layers.GlobalMaxPooling2D(name="max_pool")(x)
        outputs = [x]

    inputs = (
        keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    )
    model = keras.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=name)
    if weights is not None:
        load_weights(model, weights, config)
    return model


def _max_pool_s2(x, size, ceil_mode, *, name):
    """A `size`x`size` max pool with stride 2, "same" padding or PyTorch's ceil mode.

    Ceil mode gives ceil((side - size) / 2) + 1 outputs: on a side where that is
    more than "valid" pooling gives, the missing window is completed with zeros
    at the end. Zeros are exact here because every pool follows a ReLU (inputs
    >= 0). For size 2 or 3 the padding is 0 or 1; one zero at the end of every
    side gives the same outputs (a zero never wins a max over values >= 0, and
    the window count is ceil mode's for every side), so unknown (None) sides,
    whose padding is not known when the model is built, are padded by 1.
    """
    sides = spatial_shape(x)
    if not ceil_mode:
        return layers.MaxPooling2D(size, strides=2, padding="same", name=name)(x)
    pads = [1 if side is None else (-(-(side - size) // 2)) * 2 + size - side
            for side in sides]
    if any(pads):
        x = layers.ZeroPadding2D(((0, pads[0]), (0, pads[1])), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(size, strides=2, padding="valid", name=name)(x)








def _head_dtype():
    """float32 classifier outputs under a mixed-precision policy, else the default.

    Under `mixed_float16` / `mixed_bfloat16` the logits are computed in float32 so
    that the losses and softmax stay numerically stable.
    """
    policy = keras.config.dtype_policy()
    if policy.compute_dtype != policy.variable_dtype:
        return "float32"
    return None
