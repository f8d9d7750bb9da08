"""The same GoogLeNet in PyTorch, and a side-by-side training benchmark against Keras.

    python -m benchmarks.torch_reference            # Keras vs PyTorch, 96x96 paper stem, batch 32
    python -m benchmarks.torch_reference --quick    # tiny smoke run

`TorchGoogLeNet` is written here by hand to match `keras_googlenet.GoogLeNet` layer
for layer: the same stems, the paper's Table 1 blocks with real 5x5 convolutions,
bias-free convolutions + BatchNorm (epsilon 1e-3, momentum 0.9 in Keras's
convention = 0.1 in PyTorch's) + ReLU, the two auxiliary heads (5x5/3 average
pool, or adaptive 4x4 pooling when the stage-4 map is under 14x14; 1x1 conv to
128; FC 1024 + ReLU; dropout 0.7; linear), global average pooling, dropout 0.4
and the main classifier. Its parameter count (`keras_style_param_count`, which
adds BatchNorm's running statistics as Keras's `count_params` does) equals the
Keras model's: 13,400,888 at 224x224 with 1000 classes.

`TorchTrainer` trains it the way `training.recipe` trains the Keras model:
cross-entropy with label smoothing 0.1 on each head, weighted 0.3 / 0.3 / 1.0,
SGD with Nesterov momentum 0.9 and weight decay on conv / dense kernels only,
linear warm-up then cosine learning-rate decay stepped every batch, and a
running accuracy per head. It is a benchmark reference, not a second training
implementation of the project.

The comparison runs every contestant in its own worker process (see
`benchmarks.harness`) and times them interleaved (A, B, A, B, ...), so that a
machine whose load changes during the run treats them alike.
"""

import argparse
import math
import sys

from benchmarks import harness

#: The paper's Table 1, as in keras_googlenet.PAPER_BLOCKS (duplicated so that this
#: module does not need Keras: the PyTorch worker imports only torch).
PAPER_BLOCKS = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)
STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))
BLOCK_NAMES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
AUX_HEADS = {"aux1": "4a", "aux2": "4d"}

#: Keras BatchNormalization(momentum=0.9, epsilon=1e-3) in PyTorch's convention.
BN_MOMENTUM = 0.1
BN_EPSILON = 1e-3


def _scale(channels, width):
    return max(1, int(round(channels * width)))


def build_torch_googlenet(classes=1000, image_size=224, stem="imagenet", width=1.0,
                          aux_logits=True, dropout=0.4, aux_dropout=0.7):
    """Returns a `torch.nn.Module` GoogLeNet matching `keras_googlenet.GoogLeNet`.

    Takes raw RGB pixels (uint8 or float, 0-255) in NCHW (or channels_last memory
    format) and scales them to [-1, 1] itself, like the Keras model. In training
    mode `forward` returns `(aux1, aux2, main)` logits (or `(main,)` without
    auxiliary heads).
    """
    import torch
    from torch import nn

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
            # 14x14 (or larger) map, adaptive 4x4 pooling on a smaller one.
            self.pool = (
                nn.AvgPool2d(5, stride=3) if side >= 14 else nn.AdaptiveAvgPool2d(4)
            )
            self.conv = ConvBlock(cin, _scale(128, width), 1)
            pooled = 4 if side < 14 else (side - 5) // 3 + 1
            self.fc = nn.Linear(_scale(128, width) * pooled * pooled, _scale(1024, width))
            self.dropout = nn.Dropout(aux_dropout)
            self.out = nn.Linear(_scale(1024, width), classes)

        def forward(self, x):
            x = self.conv(self.pool(x))
            x = torch.relu(self.fc(torch.flatten(x, 1)))
            return self.out(self.dropout(x))

    class GoogLeNetTorch(nn.Module):
        def __init__(self):
            super().__init__()
            w = lambda c: _scale(c, width)
            if stem == "imagenet":
                self.stem = nn.Sequential(
                    ConvBlock(3, w(64), 7, stride=2),
                    nn.MaxPool2d(3, stride=2, padding=1),
                    ConvBlock(w(64), w(64), 1),
                    ConvBlock(w(64), w(192), 3),
                    nn.MaxPool2d(3, stride=2, padding=1),
                )
                side = _same(_same(_same(image_size, 2), 2), 2)
            elif stem == "cifar":
                self.stem = ConvBlock(3, w(192), 3)
                side = image_size
            else:
                raise ValueError(f"stem must be 'imagenet' or 'cifar'. Received: stem={stem!r}")
            table = dict(zip(BLOCK_NAMES, PAPER_BLOCKS))
            cin = w(192)
            self.stages = nn.ModuleList()
            self.aux = nn.ModuleDict()
            self.aux_after = {}
            for i, stage in enumerate(STAGES):
                if i:
                    side = _same(side, 2)
                blocks = nn.ModuleList()
                for name in stage:
                    block = Inception(cin, [w(c) for c in table[name]])
                    cin = block.out_channels
                    blocks.append(block)
                    for head, source in AUX_HEADS.items():
                        if aux_logits and source == name:
                            self.aux[head] = AuxHead(cin, side)
                            self.aux_after[(i, len(blocks) - 1)] = head
                self.stages.append(blocks)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Linear(cin, classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

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


def _same(side, stride):
    return -(-side // stride)


def keras_style_param_count(model):
    """Parameters as Keras's `count_params` counts them: weights plus BatchNorm's
    running mean and variance (PyTorch keeps those as buffers, not parameters)."""
    import torch

    params = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params += module.running_mean.numel() + module.running_var.numel()
    return params


def count_macs(model, image_size):
    """Multiply-adds per image of the training-mode forward pass (convs + linears),
    counted with forward hooks; the same convention as `keras_googlenet.count_flops`."""
    import torch

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


class TorchTrainer:
    """One training step of the recipe in `training.recipe`, in PyTorch.

    Args:
        model: From `build_torch_googlenet`.
        steps: Total steps of the learning-rate schedule.
        lr, momentum, weight_decay, label_smoothing, aux_weight, warmup_steps:
            The recipe's settings (weight decay is PyTorch's coupled L2, 5e-4, the
            equivalent of the Keras recipe's decoupled 5e-3 with momentum 0.9).
        channels_last: Run in channels_last memory format.
    """

    def __init__(self, model, *, steps=1000, lr=0.1, momentum=0.9, weight_decay=5e-4,
                 label_smoothing=0.1, aux_weight=0.3, warmup_steps=None,
                 channels_last=False):
        import torch

        self.torch = torch
        self.model = model
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        decay, no_decay = [], []
        for module in self.model.modules():
            for name, p in module.named_parameters(recurse=False):
                is_kernel = name == "weight" and isinstance(
                    module, (torch.nn.Conv2d, torch.nn.Linear))
                (decay if is_kernel else no_decay).append(p)
        self.optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, momentum=momentum, nesterov=True,
        )
        warmup = max(0, int(0.05 * steps) if warmup_steps is None else warmup_steps)

        def factor(step):
            if step < warmup:
                return (step + 1) / warmup
            t = min(1.0, (step - warmup) / max(1, steps - warmup))
            return 0.5 * (1 + math.cos(math.pi * t))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.loss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.aux_weight = aux_weight
        self.correct = None
        self.seen = 0

    def prepare(self, images, labels):
        """uint8 NHWC numpy images, int labels -> tensors in the model's layout."""
        torch = self.torch
        x = torch.from_numpy(images).permute(0, 3, 1, 2)  # NCHW view of NHWC memory
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last
                         else torch.contiguous_format)
        return x, torch.from_numpy(labels).long()

    def step(self, x, y):
        """One optimizer step; returns the loss tensor."""
        self.model.train()
        outputs = self.model(x)
        weights = [self.aux_weight] * (len(outputs) - 1) + [1.0]
        loss = sum(w * self.loss(o, y) for w, o in zip(weights, outputs))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        with self.torch.no_grad():  # running accuracy per head, as Keras's metrics
            correct = self.torch.stack([(o.argmax(1) == y).sum() for o in outputs])
            self.correct = correct if self.correct is None else self.correct + correct
            self.seen += len(y)
        return loss


# ---------------------------------------------------------------------------
# Command line: the side-by-side comparison
# ---------------------------------------------------------------------------


def reference_cases(args):
    """The contestants: Keras on each requested backend, PyTorch in each layout."""
    common = dict(stem=args.stem, image_size=args.image_size, width=args.width,
                  batch_size=args.batch_size, classes=harness.default_classes(args.stem),
                  steps=args.steps, warmup_steps=args.warmup_steps)
    cases = []
    for backend in args.keras_backends:
        for jit in args.keras_jit:
            if backend == "jax" and not jit:
                continue  # op-by-op JAX: not a way anyone trains
            if backend == "torch" and jit:
                continue  # torch.compile: minutes of compilation, not measured here
            cases.append(dict(common, framework="keras", backend=backend, jit=jit,
                              precision="float32",
                              label=f"Keras 3 / {backend}, jit={'on' if jit else 'off'}"))
    if args.keras_unfused_batchnorm:
        cases.append(dict(common, framework="keras", backend="tensorflow", jit=False,
                          precision="float32", fused_batchnorm=False,
                          label="Keras 3 / tensorflow, jit=off, Keras's unfused BatchNorm "
                          "(before)"))
    for layout in args.torch_layouts:
        for threads in args.torch_threads:
            label = f"PyTorch {layout}" + (f", {threads} threads" if threads else "")
            cases.append(dict(common, framework="torch", channels_last=layout == "channels_last",
                              torch_threads=threads or None, label=label))
    return cases


def summarize(results):
    """Keras against PyTorch: the fastest of each (by median images/s), their ratio,
    and the paired ratio of the fastest Keras to every PyTorch contestant. The
    unfused-BatchNorm "before" row is reported apart: it is no longer the project's
    code."""
    ok = [r for r in results if r["status"] == "ok"]
    keras_rows = [r for r in ok if r["framework"] == "keras" and r["fused_batchnorm"]]
    torch_rows = [r for r in ok if r["framework"] == "torch"]
    if not keras_rows or not torch_rows:
        return {}
    keras_best = max(keras_rows, key=lambda r: r["images_per_second"])
    torch_best = max(torch_rows, key=lambda r: r["images_per_second"])
    summary = {
        "fastest_keras": keras_best["label"],
        "fastest_torch": torch_best["label"],
        "keras_over_torch": keras_best["images_per_second"] / torch_best["images_per_second"],
        # Per-repeat ratio (same pass over the contestants), median: steadier on a busy machine.
        "keras_over_torch_paired": harness.paired_ratio(keras_best, torch_best),
        "fastest_keras_over_each_torch_paired": {
            r["label"]: harness.paired_ratio(keras_best, r) for r in torch_rows},
    }
    before = next((r for r in ok if r["framework"] == "keras" and not r["fused_batchnorm"]),
                  None)
    if before is not None:
        summary["unfused_batchnorm_over_fastest_torch_paired"] = harness.paired_ratio(
            before, torch_best)
        # The "after" of the pair: the same setting (TensorFlow, jit off), if it ran
        # (it does not with --keras-jit on).
        fused_tf = next((r for r in keras_rows if r["backend"] == "tensorflow" and not r["jit"]),
                        None)
        if fused_tf is not None:
            summary["fused_over_unfused_batchnorm_paired"] = harness.paired_ratio(fused_tf,
                                                                                  before)
    return summary


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.torch_reference",
        description="Training images/s of the Keras GoogLeNet against the same network in "
        "PyTorch, trained the same way, measured side by side (interleaved) in one run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--stem", choices=("imagenet", "cifar"), default="imagenet")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--keras-backends", type=harness.csv_list, default=None,
                   help="Keras backends to run, each in its own process (default: tensorflow,jax; "
                   "with --quick: $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--keras-jit", type=harness.bool_list, default=[False, True],
                   help="jit settings for Keras (jax always jits; torch never)")
    p.add_argument("--keras-unfused-batchnorm", action="store_true",
                   help="also run Keras/TensorFlow (jit off) with Keras 3's own unfused "
                   "BatchNormalization (keras_googlenet.BatchNormalization(fused=False)): the "
                   "project before its fused layer, for a before/after figure")
    p.add_argument("--torch-layouts", type=harness.csv_list, default=["nchw", "channels_last"],
                   help="PyTorch memory formats: nchw, channels_last")
    p.add_argument("--torch-threads", type=harness.int_list, default=[0, 1],
                   help="torch.set_num_threads values (0: PyTorch's default, one thread per "
                   "core); one thread is also measured because PyTorch's OpenMP threads lose "
                   "badly on a machine that is busy with other work")
    p.add_argument("--steps", type=int, default=6, help="steps per timed repeat (the first "
                   "step of each repeat is not timed)")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before the repeats")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per contestant (median)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak (TFLOP/s) for the utilisation column")
    p.add_argument("--output", default="benchmarks/results/torch_reference.json")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: CIFAR stem 32x32, width 0.125, batch 8, 2 steps, 1 repeat; "
                   "Keras on one backend against PyTorch NCHW with 1 thread")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.stem, args.image_size, args.width, args.batch_size = "cifar", 32, 0.125, 8
        args.keras_backends = args.keras_backends or [harness.current_backend()]
        args.keras_jit = [args.keras_backends[0] == "jax"]
        args.torch_layouts, args.torch_threads = ["nchw"], [1]
        args.keras_unfused_batchnorm = False
        args.steps, args.warmup_steps, args.repeats = 2, 1, 1
    args.keras_backends = args.keras_backends or ["tensorflow", "jax"]
    cases = reference_cases(args)
    load_start = harness.load_average()
    print(f"Measuring {len(cases)} contestant(s), {args.repeats} repeat(s) each, load average "
          f"{load_start} ...", file=sys.stderr)
    results = harness.run_interleaved(cases, repeats=args.repeats, peak_tflops=args.peak_tflops)
    summary = summarize(results)
    report = harness.report("torch_reference", vars(args), results, load_start=load_start,
                            extra={"summary": summary})
    harness.write_json(args.output, report)
    print(harness.markdown_table(results, peak=args.peak_tflops is not None))
    if summary:
        print(f"\nFastest Keras ({summary['fastest_keras']}) / fastest PyTorch "
              f"({summary['fastest_torch']}): {summary['keras_over_torch']:.2f}x (ratio of "
              f"medians), {summary['keras_over_torch_paired']:.2f}x (median of paired repeats)")
    print(f"\nLoad average {load_start} -> {report['load_average']['end']}; wrote {args.output}")
    return 1 if any(r["status"] != "ok" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
