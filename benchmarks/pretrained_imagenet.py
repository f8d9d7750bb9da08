"""Pretrained ImageNet GoogLeNet: export sizes/latency, and fine-tuning speed at 224.

    python -m benchmarks.pretrained_imagenet --pth PATH.pth [--output JSON]

Three measurements, printed as tables and written to one JSON:

1. The 1000-class ImageNet model (`GoogLeNet(weights=PATH)`, torchvision's
   network, 224x224) exported with `keras_googlenet.export.export(...,
   labels="imagenet")`: size and single-image LiteRT latency of every TFLite
   variant, and their top-1 agreement with Keras, next to the TFLite hosted
   Inception V1 figures. No ImageNet weights or images can be downloaded on the
   machines this was written on, so `--pth` is a torchvision GoogLeNet state
   dict with random weights (sizes and latency do not depend on the values;
   agreement is measured on real CIFAR-10 photos resized to 224).
2. Training images/s at the fine-tuning size (224, three heads, SGD), the
   fine-tuning network (torchvision's options) and the paper's side by side,
   interleaved repeats in one run.
3. The fine-tuning mechanics end to end are `tests/test_finetune.py`; the
   command a user runs is printed in docs/training.md ("Fine-tuning the ImageNet
   weights on your images").
"""

import argparse
import os
import statistics
import sys
import tarfile
import tempfile
import time

import numpy as np

from keras_googlenet._internal.environment import describe, load_average
from keras_googlenet._internal.fileio import atomic_write_json

#: TensorFlow Lite's hosted Inception V1 (tensorflow.org/lite/guide/hosted_models).
HOSTED_INCEPTION_V1 = {"int8": {"size_mb": 6.4, "top1": 0.701}}
DEFAULT_ARCHIVE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                               "cifar10", "train.tar.xz")


def photos(archive, n, side=224):
    """The first `n` CIFAR-10 photos of the archive, resized to side x side, uint8."""
    from PIL import Image

    images = []
    with tarfile.open(archive, "r:xz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                with Image.open(tar.extractfile(member)) as im:
                    images.append(np.asarray(im.convert("RGB").resize((side, side))))
            if len(images) == n:
                break
    return np.stack(images)


def export_rows(pth, images, repeats):
    import keras_googlenet as kg
    from keras_googlenet.export import export

    model = kg.GoogLeNet(weights=pth)
    with tempfile.TemporaryDirectory() as tmp:
        report = export(model, os.path.join(tmp, "imagenet"), labels="imagenet",
                        calibration_images=images, eval_images=images, repeats=repeats,
                        log=lambda *a: None)
    return report["artifacts"]


def train_rows(batch, steps, repeats):
    import keras

    import keras_googlenet as kg

    def build(options):
        model = kg.GoogLeNet(classes=10, aux_logits=True, **options)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * 3,
                      loss_weights=[0.3, 0.3, 1.0])
        return model

    cases = {"fine-tuning (TORCHVISION_OPTIONS)": build(kg.TORCHVISION_OPTIONS),
             "paper (defaults)": build({})}
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 10, batch * steps)
    for model in cases.values():  # warm-up: tracing and the first step
        model.fit(x[:batch], [y[:batch]] * 3, batch_size=batch, epochs=1, verbose=0)
    times = {name: [] for name in cases}
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        for name, model in cases.items():
            start = time.perf_counter()
            model.fit(x, [y] * 3, batch_size=batch, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
    rows = []
    for name, ts in times.items():
        rows.append({"case": name, "images_per_second": batch * steps / statistics.median(ts),
                     "repeats_s": ts, "macs_per_image": kg.count_flops(
                         kg.inference_model(cases[name]))})
    first = rows[0]["images_per_second"]
    for r in rows:
        r["vs_first"] = r["images_per_second"] / first
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pth", required=True, help="torchvision GoogLeNet state dict")
    p.add_argument("--archive", default=DEFAULT_ARCHIVE, help="CIFAR-10 train.tar.xz")
    p.add_argument("--images", type=int, default=64, help="calibration/agreement photos")
    p.add_argument("--latency-repeats", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "pretrained_imagenet.json"))
    args = p.parse_args(argv)
    start_load = load_average()
    images = photos(args.archive, args.images)
    artifacts = export_rows(args.pth, images, args.latency_repeats)
    training = train_rows(args.batch_size, args.steps, args.repeats)

    print("| ImageNet model (1000 classes, 224x224) | size (MB) | latency (ms, 1 thread) "
          "| top-1 agreement with Keras |")
    print("|---|---:|---:|---:|")
    for a in artifacts:
        print(f"| {a['format']} | {a['size_bytes'] / 1e6:.1f} | {a['latency_ms']:.1f} "
              f"| {a['top1_agreement']:.3f} |")
    hosted = HOSTED_INCEPTION_V1["int8"]
    print(f"| TFLite hosted Inception V1, int8 | {hosted['size_mb']} | | "
          f"({100 * hosted['top1']:.1f}% ImageNet top-1) |")
    print("\n| training at 224, batch %d, three heads | images/s | vs first |" % args.batch_size)
    print("|---|---:|---:|")
    for r in training:
        print(f"| {r['case']} | {r['images_per_second']:.2f} | {r['vs_first']:.2f} |")
    doc = {
        "benchmark": "pretrained_imagenet",
        "command": "python -m benchmarks.pretrained_imagenet " + " ".join(sys.argv[1:]),
        "settings": vars(args),
        "weights_note": "random torchvision weights (no ImageNet weights can be downloaded "
                        "here): sizes and latency do not depend on the values",
        "environment": describe(),
        "load_average": {"start": start_load, "end": load_average()},
        "export": artifacts,
        "hosted_inception_v1": HOSTED_INCEPTION_V1,
        "training_224": training,
    }
    atomic_write_json(args.output, doc)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
