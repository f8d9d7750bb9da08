"""Predicates and limits of `training.config`'s checks: is a value a valid setting.

Each takes a value as it came from a flag or a saved `config.json` (so of any
type) and returns a bool; `TrainConfig.validate` turns a False into a
`ConfigError` that names the flag, the value and what was expected.
`weights_checks` lists the checks of `--weights` and of what its weights fix
(from `keras_googlenet.pretrained`'s registry), as `(flag, value, valid,
requirement)`.
"""

import math
import os
import re

from keras_googlenet.architecture import MIN_INPUT_SIZE
from keras_googlenet.pretrained import PRETRAINED_WEIGHTS, argument_conflicts, weights_entry
from keras_googlenet.torch_weights import TORCH_SUFFIXES
from keras_googlenet._internal.values import is_int
from training.fields import must_be, rule


#: A run name: a plain folder name.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: Upper bounds of the sizes, checked before anything is allocated. Each says why.
MAX_NAME_LENGTH = 200  # file names stop at 255 bytes; temporary names add to NAME
MAX_IMAGE_SIZE = 4096  # one 4096x4096 image's activations already need tens of GiB
MAX_BATCH_SIZE = 2**16  # no accelerator holds 65,536 GoogLeNet activations at once
MAX_EPOCHS = 10**6
MAX_SEED = 2**32 - 1  # numpy's seeds (keras.utils.set_random_seed) stop there
MAX_STEPS_PER_EXECUTION = 10**6
MAX_SYNTHETIC_GIB = 16  # --data synthetic generates its uint8 images in memory
MAX_INIT_TIMEOUT = 3600  # an hour: a cluster that needs longer to start is broken


def is_num(value):
    """A finite int or float (not a bool: inf and nan are no setting's valid value)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def at_least(value, minimum):
    return is_int(value) and value >= minimum


def within(value, minimum, maximum):
    return is_int(value) and minimum <= value <= maximum


def fraction(value):
    return is_num(value) and 0 <= value < 1


def is_address(address):
    """`host:port` with a port in [1, 65535] (IPv6 hosts in brackets)."""
    host, _, port = address.strip().rpartition(":")
    return bool(host) and port.isdigit() and 1 <= int(port) <= 65535


def min_image_size(config):
    """The smallest --image-size of the config's --stem."""
    stem = config.model.stem
    return MIN_INPUT_SIZE.get(stem, 1) if isinstance(stem, str) else 1


def max_warmup(config):
    """The last epoch warm-up may end at: that of the frozen phase, if any."""
    if at_least(config.freeze_epochs, 1):
        return config.freeze_epochs
    return config.epochs if is_int(config.epochs) else 0


def max_synthetic(config):
    """Most `--data synthetic` images (and a tenth more held out) in MAX_SYNTHETIC_GIB."""
    size = config.image_size if within(config.image_size, 1, MAX_IMAGE_SIZE) else 1
    return max(1, MAX_SYNTHETIC_GIB * 2**30 // (size * size * 3 * 11 // 10))


#: Checks (`training.fields.Check`) several fields share.
FRACTION = rule(fraction, "in [0, 1)")
NON_NEGATIVE = rule(lambda v: is_num(v) and v >= 0, "a finite number >= 0")
BOOLEAN = rule(lambda v: v in (True, False), "a boolean")


def first_failure(checks):
    """The message of the first failing `(flag, value, valid, requirement)`, or None."""
    return next((must_be(flag, requirement, repr(value))
                 for flag, value, valid, requirement in checks if not valid), None)


#: The settings pretrained weights fix (`keras_googlenet.pretrained.argument_conflicts`
#: checks them): field -> its flag, and how to say the value the weights need.
_FIXED = {
    "stem": ("--stem", str),
    "width": ("--width", "{:g}".format),
    "batch_norm": ("--batch-norm", lambda wanted: "on" if wanted else "off"),
    "blocks": ("blocks", lambda wanted: "the paper's table"),
}


def weights_checks(config):
    """`TrainConfig.validate`'s checks of --weights and the settings its weights fix."""
    weights, entry = config.weights, weights_entry(config.weights)
    is_file = isinstance(weights, str) and weights.endswith(TORCH_SUFFIXES) and os.path.isfile(
        weights)
    checks = [("--weights", weights, weights in PRETRAINED_WEIGHTS or is_file,
               f"one of {sorted(PRETRAINED_WEIGHTS)} or an existing torchvision GoogLeNet "
               f"{'/'.join(TORCH_SUFFIXES)} file")]
    if entry is None:
        return checks
    given = f"with --weights {weights}"
    fixed = {name: getattr(config.model, name) for name in _FIXED}
    return checks + [(_FIXED[name][0], value, False, f"{_FIXED[name][1](wanted)} {given}")
                     for name, value, wanted in argument_conflicts(entry, fixed)]
