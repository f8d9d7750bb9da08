"""The flags of `python -m training.cifar`: one argparse group per `TrainConfig` section.

`build_parser` adds the flags declared with `TrainConfig`'s fields (name, help,
type, choices and default; `training.fields`); `config_from_args` turns
the parsed flags into an unresolved `TrainConfig` (the CLI's "auto" choices
become `None`, resolved later for the machine).
"""

import argparse
import sys

from keras_googlenet.architecture import DEFAULT_INPUT_SIZE
from keras_googlenet.pretrained import weights_entry
from training.cli import OneLineParser
from training.config import TrainConfig
from training.fields import add_arguments, from_flags

#: The text `--help` shows under a group's title.
GROUP_DESCRIPTIONS = {
    "distributed": "--strategy multi-worker (JAX): start the same command once per process; "
    "each flag left out is read from Keras's environment variable",
}


def build_parser():
    """The `python -m training.cifar` argument parser: one argument per `TrainConfig`
    field declared with a flag (`training.fields.add_arguments`)."""
    p = OneLineParser(
        prog="python -m training.cifar",
        description="Train GoogLeNet (three heads) on CIFAR-10 or an image folder, "
        "evaluate it on a held-out split and export the main head as a SavedModel.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(p, TrainConfig, GROUP_DESCRIPTIONS)
    return p


def config_from_args(argv=None):
    """Parses command-line arguments into an unresolved `TrainConfig`."""
    args = vars(build_parser().parse_args(argv))
    entry = weights_entry(args["weights"])
    if entry is not None:  # pretrained weights: their stem, width and input size by default
        given = sys.argv[1:] if argv is None else argv
        flags = {str(a).split("=", 1)[0] for a in given}
        for name in ("stem", "width"):
            if f"--{name}" not in flags:
                args[name] = entry["arguments"][name]
        if "--image-size" not in flags:
            args["image_size"] = entry["input_size"] or DEFAULT_INPUT_SIZE[args["stem"]]
    return from_flags(TrainConfig, args)
