"""The flags of `python -m training.cifar`: one argparse group per `TrainConfig` section.

`build_parser` takes every default from `TrainConfig`; `config_from_args` turns
the parsed flags into an unresolved `TrainConfig` (the CLI's "auto" choices
become `None`, resolved later for the machine).
"""

import argparse
import sys

from keras_googlenet.architecture import DEFAULT_INPUT_SIZE
from keras_googlenet.pretrained import weights_entry
from training.cli import OneLineParser, add_framework_logs_flag
from training.config import (
    DATA_SOURCES,
    DEFAULT_FINETUNE_LR_FACTOR,
    LR_REFERENCE_BATCH,
    LR_SCALINGS,
    PIPELINES,
    PRECISIONS,
    STEMS,
    STRATEGIES,
    TrainConfig,
)


def build_parser():
    """The `python -m training.cifar` argument parser (defaults from `TrainConfig`)."""
    d = TrainConfig()
    p = OneLineParser(
        prog="python -m training.cifar",
        description="Train GoogLeNet (three heads) on CIFAR-10 or an image folder, "
        "evaluate it on a held-out split and export the main head as a SavedModel.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bool_flag = argparse.BooleanOptionalAction

    g = p.add_argument_group("run")
    g.add_argument("--name", default=d.name, help="run name: runs/NAME and saved_models/NAME")
    g.add_argument("--runs-dir", default=d.runs_dir, help="folder of run folders")
    g.add_argument("--export-dir", default=d.export_dir, help="folder of exported SavedModels")
    g.add_argument("--export", action=bool_flag, default=d.export,
                   help="export the main head as a SavedModel (needs TensorFlow)")
    g.add_argument("--overwrite", action="store_true",
                   help="train again over a finished run (or one started with other settings)")
    g.add_argument("--verbose", type=int, default=d.verbose, choices=(0, 1, 2),
                   help="progress: 1 a live line on a terminal (one line per epoch otherwise), "
                        "2 one line per epoch, 0 none")
    add_framework_logs_flag(g)

    g = p.add_argument_group("data")
    g.add_argument("--data", choices=DATA_SOURCES, default=None,
                   help="data source (default: folder with --data-dir, else tfds)")
    g.add_argument("--data-dir", default=None,
                   help="image folder DIR/train/<class>/* (optional DIR/val or DIR/test), "
                   "or a .tar/.tar.xz/.zip of one")
    g.add_argument("--tfds-name", default=d.tfds_name, help="TFDS dataset for --data tfds")
    g.add_argument("--tfds-dir", default=None, help="TFDS data folder (default: TFDS's own)")
    g.add_argument("--cache-dir", default=None,
                   help="where archives are extracted (default: $KERAS_GOOGLENET_CACHE "
                   "or ~/.cache/keras_googlenet)")
    g.add_argument("--max-extract-mb", type=int, default=d.max_extract_mb,
                   help="refuse an archive that expands to more MiB than this")
    g.add_argument("--max-extract-ratio", type=float, default=d.max_extract_ratio,
                   help="refuse an archive that expands to more than this times its size")
    g.add_argument("--image-size", type=int, default=d.image_size,
                   help="train at SIZExSIZE (images are resized once when loaded)")
    g.add_argument("--limit", type=int, default=None,
                   help="use N examples per split (a seeded sample), for smoke runs")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="held-out fraction of train (stratified) when there is no val/ or test/")
    g.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable or non-image files instead of stopping")
    g.add_argument("--synthetic-examples", type=int, default=d.synthetic_examples,
                   help="training images for --data synthetic")
    g.add_argument("--pipeline", choices=("auto", *PIPELINES), default="auto",
                   help="input pipeline: tf.data needs TensorFlow; numpy is a keras PyDataset")

    g = p.add_argument_group("model")
    g.add_argument("--stem", choices=STEMS, default=d.stem,
                   help="cifar: 3x3 stem for 32x32; imagenet: the paper's (e.g. --image-size 96)")
    g.add_argument("--width", type=float, default=d.width, help="channel multiplier")
    g.add_argument("--weights", default=None, metavar="imagenet|cifar10|PATH.pth",
                   help="fine-tune pretrained weights (new heads): imagenet or a .pth is "
                   "torchvision's network (implies --stem imagenet and, unless given, "
                   "--image-size 224); cifar10 is the shipped CIFAR-10 model (implies "
                   "--stem cifar, --width 0.5 and, unless given, --image-size 32)")
    g.add_argument("--batch-norm", action=bool_flag, default=d.batch_norm,
                   help="BatchNorm after every convolution (off: the 2014 network with LRN)")
    g.add_argument("--dropout", type=float, default=d.dropout,
                   help="dropout before the main classifier")
    g.add_argument("--aux-dropout", type=float, default=d.aux_dropout,
                   help="dropout in the auxiliary heads")
    g.add_argument("--aux-weight", type=float, default=d.aux_weight,
                   help="loss weight of each auxiliary head (main: 1)")

    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size")
    g.add_argument("--lr", type=float, default=d.lr,
                   help="peak learning rate (after warm-up); with --lr-scaling linear, for a "
                   f"batch of {LR_REFERENCE_BATCH}")
    g.add_argument("--lr-scaling", choices=LR_SCALINGS, default=d.lr_scaling,
                   help=f"linear: the peak learning rate is --lr x --batch-size / "
                   f"{LR_REFERENCE_BATCH}; none: --lr as given")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    g.add_argument("--nesterov", action=bool_flag, default=d.nesterov, help="Nesterov momentum")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay, not on biases/BatchNorm (Keras style: 5e-3 "
                   "matches PyTorch's coupled 5e-4 at momentum 0.9)")
    g.add_argument("--warmup-epochs", type=float, default=None,
                   help="epochs of linear warm-up from 0 to --lr, then cosine decay to 0 at "
                   "the last epoch (with --freeze-epochs: at the last frozen epoch; default: "
                   "5%% of --epochs, or of --freeze-epochs, at most 5)")
    g.add_argument("--freeze-epochs", type=int, default=d.freeze_epochs, metavar="N",
                   help="with --weights: the first N epochs train only the new heads (backbone "
                   "frozen); the rest train every layer but the backbone's BatchNorm (kept in "
                   "inference mode) with a fresh optimizer, from --lr (after --lr-scaling) x "
                   "--finetune-lr-factor without warm-up, cosine to 0 (default 0: every layer "
                   "trains from the start)")
    g.add_argument("--finetune-lr-factor", type=float, default=None, metavar="F",
                   help="peak learning rate after the frozen phase, as a fraction of --lr "
                   f"(default with --freeze-epochs: {DEFAULT_FINETUNE_LR_FACTOR})")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing,
                   help="label smoothing of every head's cross-entropy")
    g.add_argument("--augment", action=bool_flag, default=d.augment,
                   help="random pad-and-crop and horizontal flip")
    g.add_argument("--pad", type=int, default=d.pad, help="pad-and-crop padding in pixels")
    g.add_argument("--cutout", type=int, default=d.cutout, metavar="SIZE",
                   help="cutout: zero one SIZExSIZE square per training image, centred at a "
                   "random pixel (clipped at the border); 0: off")
    g.add_argument("--tta-flip", action=bool_flag, default=d.tta_flip,
                   help="also evaluate with flip test-time augmentation (mean of the "
                   "probabilities on the image and its mirror): *_tta columns in history.csv, "
                   "val_accuracy_tta in results.json, and the best epoch picked by it")
    g.add_argument("--ema", action=bool_flag, default=d.ema,
                   help="keep an exponential moving average of the weights, evaluate it every "
                   "epoch (*_ema columns in history.csv) and use it as the final model")
    g.add_argument("--ema-momentum", type=float, default=d.ema_momentum, help="EMA momentum")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the split, shuffles and initialisation")

    g = p.add_argument_group("system")
    g.add_argument("--jit", action=bool_flag, default=None,
                   help="XLA compilation (default: on with a GPU or on JAX, off on CPU)")
    g.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto",
                   help="auto: mixed_bfloat16 on recent GPUs, mixed_float16 on older ones, "
                   "float32 on CPU")
    g.add_argument("--strategy", choices=STRATEGIES, default=d.strategy,
                   help="mirrored: tf.distribute over local GPUs (TensorFlow); "
                   "data-parallel: keras.distribution over local devices (JAX); "
                   "multi-worker: one run over several processes and machines (JAX; see "
                   "the distributed flags)")
    g.add_argument("--steps-per-execution", type=int, default=d.steps_per_execution,
                   help="training steps per compiled call; raise on GPUs to cut per-step "
                   "overhead (callbacks then see every N-th batch)")
    g.add_argument("--run-eagerly", action="store_true",
                   help="debugging: run the model op by op, without tf.function/jit (slow)")

    g = p.add_argument_group(
        "distributed", "--strategy multi-worker (JAX): start the same command once per process; "
        "each flag left out is read from Keras's environment variable")
    g.add_argument("--job-addresses", default=None, metavar="HOST:PORT[,HOST:PORT...]",
                   help="address of process 0, the coordinator (or every process's, process 0 "
                   "first); default $KERAS_DISTRIBUTION_JOB_ADDRESSES")
    g.add_argument("--num-processes", type=int, default=None,
                   help="processes of the run; default $KERAS_DISTRIBUTION_NUM_PROCESSES")
    g.add_argument("--process-id", type=int, default=None,
                   help="this process's id, 0 (the chief, which writes the run folder) to N-1; "
                   "default $KERAS_DISTRIBUTION_PROCESS_ID")
    g.add_argument("--init-timeout", type=int, default=d.init_timeout,
                   help="seconds to wait for the other processes before a one-line error")
    return p


def config_from_args(argv=None):
    """Parses command-line arguments into an unresolved `TrainConfig`."""
    args = vars(build_parser().parse_args(argv))
    for key in ("precision", "pipeline"):
        if args[key] == "auto":
            args[key] = None
    entry = weights_entry(args["weights"])
    if entry is not None:  # pretrained weights: their stem, width and input size by default
        given = sys.argv[1:] if argv is None else argv
        flags = {str(a).split("=", 1)[0] for a in given}
        for name in ("stem", "width"):
            if f"--{name}" not in flags:
                args[name] = entry["arguments"][name]
        if "--image-size" not in flags:
            args["image_size"] = entry["input_size"] or DEFAULT_INPUT_SIZE[args["stem"]]
    return TrainConfig(**args)
