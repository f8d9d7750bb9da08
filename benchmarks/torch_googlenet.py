"""The same GoogLeNet in PyTorch, built from a `keras_googlenet.GoogLeNetConfig`.

    config = GoogLeNetConfig(stem="cifar", classes=10, width=0.125, input_shape=(32, 32, 3))
    model = build_torch_googlenet(config)     # == keras_googlenet.build_model(config)

`build_torch_googlenet` matches `keras_googlenet.GoogLeNet` layer for layer, and
takes every architecture fact from `keras_googlenet.architecture`: the block
table (the configuration's `blocks`, else the paper's Table 1) with real 5x5
convolutions, the stages, the stems' channels, where the auxiliary heads attach
and their sizes, and the channel scaling by `width`. Convolutions are bias-free
and followed by BatchNorm (epsilon 1e-3, momentum 0.9 in Keras's convention =
0.1 in PyTorch's) and ReLU; the auxiliary heads use the paper's 5x5/3 average
pool, or adaptive 4x4 pooling when the stage-4 map is under 14x14, then a 1x1
convolution, a ReLU fully connected layer, dropout and a linear classifier;
the main head is global average pooling, dropout and a linear classifier. Its
parameter count (`keras_style_param_count`, which adds BatchNorm's running
statistics as Keras's `count_params` does) and multiply-adds (`count_macs`)
equal the Keras model's (tests/test_architecture_facts.py).

This module imports PyTorch only when a model is built or counted, and never
Keras: the PyTorch worker of the benchmarks loads only torch.
"""

import math

from keras_googlenet.architecture import (
    AUX_CONV_FILTERS,
    AUX_FC_UNITS,
    AUX_HEADS,
    AUX_PAPER_POOL_MIN_SIDE,
    AUX_POOL_SIDE,
    BLOCK_NAMES,
    DEFAULT_INPUT_SIZE,
    PAPER_BLOCKS,
    STAGE_BLOCKS,
    STEM_CHANNELS,
    STEM_KERNELS,
    scale_channels,
    stage_sides,
)

#: Keras BatchNormalization(momentum=0.9, epsilon=1e-3) in PyTorch's convention.
BN_MOMENTUM = 0.1
BN_EPSILON = 1e-3


def _check(config):
    """The configuration's square input side; refuses what the reference does not build."""
    unsupported = {"include_top": True, "pooling": None, "classifier_activation": None,
                   "batch_norm": True, "include_preprocessing": True}
    for field, value in unsupported.items():
        if getattr(config, field) != value:
            raise ValueError(f"the PyTorch reference builds only {field}={value!r}; "
                             f"got {field}={getattr(config, field)!r}")
    if config.input_shape is None:
        return DEFAULT_INPUT_SIZE[config.stem]
    height, width, channels = config.input_shape
    if height != width or channels != 3:
        raise ValueError(f"the PyTorch reference takes square RGB (channels-last) input shapes; "
                         f"got input_shape={config.input_shape!r}")
    return height


def build_torch_googlenet(config):
    """Returns a `torch.nn.Module` GoogLeNet equal to `keras_googlenet.build_model(config)`.

    Takes raw RGB pixels (uint8 or float, 0-255) in NCHW (or channels_last memory
    format) and scales them to [-1, 1] itself, like the Keras model. In training
    mode `forward` returns `(aux1, aux2, main)` logits (or `(main,)` without
    auxiliary heads); in eval mode `(main,)`.

    Args:
        config: A `keras_googlenet.GoogLeNetConfig` with `include_top=True`,
            `batch_norm=True` and a square channels-last `input_shape` (or None).

    Raises:
        ValueError: For a configuration the reference does not build.
    """
    import torch
    from torch import nn

    config = config.validate()
    image_size = _check(config)
    w = lambda c: scale_channels(c, config.width)  # noqa: E731
    table = dict(zip(BLOCK_NAMES, config.blocks or PAPER_BLOCKS))
    sides = stage_sides(config.stem, image_size)

    class ConvBlock(nn.Sequential):
        def __init__(self, cin, cout, k, stride=1):
            super().__init__(
                nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                nn.BatchNorm2d(cout, eps=BN_EPSILON, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            )

    class Inception(nn.Module):
        def __init__(self, cin, channels):
            super().__init__()
            c1, c3r, c3, c5r, c5, cp = channels
            self.branch1 = ConvBlock(cin, c1, 1)
            self.branch3 = nn.Sequential(ConvBlock(cin, c3r, 1), ConvBlock(c3r, c3, 3))
            # A real 5x5 convolution, as in the paper and the Keras model.
            self.branch5 = nn.Sequential(ConvBlock(cin, c5r, 1), ConvBlock(c5r, c5, 5))
            self.branch_pool = nn.Sequential(
                nn.MaxPool2d(3, stride=1, padding=1), ConvBlock(cin, cp, 1)
            )
            self.out_channels = c1 + c3 + c5 + cp

        def forward(self, x):
            return torch.cat(
                [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1
            )

    class AuxHead(nn.Module):
        def __init__(self, cin, side):
            super().__init__()
            # As keras_googlenet.model.auxiliary_head: the paper's 5x5/3 pool on a
            # large enough map, adaptive pooling to AUX_POOL_SIDE on a smaller one.
            paper_pool = side >= AUX_PAPER_POOL_MIN_SIDE
            self.pool = (nn.AvgPool2d(5, stride=3) if paper_pool
                         else nn.AdaptiveAvgPool2d(AUX_POOL_SIDE))
            pooled = (side - 5) // 3 + 1 if paper_pool else AUX_POOL_SIDE
            filters, units = w(AUX_CONV_FILTERS), w(AUX_FC_UNITS)
            self.conv = ConvBlock(cin, filters, 1)
            self.fc = nn.Linear(filters * pooled * pooled, units)
            self.dropout = nn.Dropout(config.aux_dropout)
            self.out = nn.Linear(units, config.classes)

        def forward(self, x):
            x = self.conv(self.pool(x))
            x = torch.relu(self.fc(torch.flatten(x, 1)))
            return self.out(self.dropout(x))

    class GoogLeNetTorch(nn.Module):
        def __init__(self):
            super().__init__()
            if config.stem == "imagenet":
                c1, c2r, c2 = (w(c) for c in STEM_CHANNELS["imagenet"])
                k1, k2r, k2 = STEM_KERNELS["imagenet"]
                self.stem = nn.Sequential(
                    ConvBlock(3, c1, k1, stride=2),
                    nn.MaxPool2d(3, stride=2, padding=1),
                    ConvBlock(c1, c2r, k2r),
                    ConvBlock(c2r, c2, k2),
                    nn.MaxPool2d(3, stride=2, padding=1),
                )
            else:
                (c2,) = (w(c) for c in STEM_CHANNELS["cifar"])
                (k,) = STEM_KERNELS["cifar"]
                self.stem = ConvBlock(3, c2, k)
            cin = c2
            self.stages = nn.ModuleList()
            self.aux = nn.ModuleDict()
            self.aux_after = {}
            for i, (number, names) in enumerate(STAGE_BLOCKS.items()):
                blocks = nn.ModuleList()
                for name in names:
                    block = Inception(cin, [w(c) for c in table[name]])
                    block.name = name
                    cin = block.out_channels
                    blocks.append(block)
                    for head, source in AUX_HEADS.items():
                        if config.aux_logits and source == name:
                            self.aux[head] = AuxHead(cin, sides[number])
                            self.aux_after[(i, len(blocks) - 1)] = head
                self.stages.append(blocks)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
            self.dropout = nn.Dropout(config.dropout)
            self.fc = nn.Linear(cin, config.classes)
            self.image_size = image_size
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

        def block_channels(self):
            """`{block name: output channels}` of the nine Inception blocks."""
            return {b.name: b.out_channels for blocks in self.stages for b in blocks}

        def forward(self, x):
            x = x.float() / 127.5 - 1.0  # the Keras model's Rescaling layer
            x = self.stem(x)
            aux = []
            for i, blocks in enumerate(self.stages):
                if i:
                    x = self.pool(x)
                for j, block in enumerate(blocks):
                    x = block(x)
                    head = self.aux_after.get((i, j))
                    if head is not None and self.training:
                        aux.append(self.aux[head](x))
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
            return (*aux, self.fc(self.dropout(x)))

    return GoogLeNetTorch()


def keras_style_param_count(model):
    """Parameters as Keras's `count_params` counts them: weights plus BatchNorm's
    running mean and variance (PyTorch keeps those as buffers, not parameters)."""
    import torch

    params = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params += module.running_mean.numel() + module.running_var.numel()
    return params


def count_macs(model, image_size=None):
    """Multiply-adds per image of the training-mode forward pass (convs + linears),
    counted with forward hooks; the same convention as `keras_googlenet.count_flops`.

    Args:
        model: From `build_torch_googlenet`.
        image_size: The input side (default: the model's).
    """
    import torch

    image_size = image_size or model.image_size
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.weight.shape  # (cout, cin/groups, kh, kw)
            total += output.shape[2] * output.shape[3] * math.prod(k)
        elif isinstance(module, torch.nn.Linear):
            total += math.prod(module.weight.shape)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    was_training = model.training
    model.train()
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total
