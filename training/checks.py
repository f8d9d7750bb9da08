"""Predicates of `training.config`'s checks: is a value a valid setting.

Each takes a value as it came from a flag or a saved `config.json` (so of any
type) and returns a bool; `TrainConfig.validate` turns a False into a
`ConfigError` that names the flag, the value and what was expected.
`weights_checks` lists the checks of `--weights` and of what its weights fix
(from `keras_googlenet.pretrained`'s registry), as `(flag, value, valid,
requirement)`.
"""

import math
import os

from keras_googlenet.pretrained import PRETRAINED_WEIGHTS, argument_conflicts, weights_entry
from keras_googlenet.torch_weights import TORCH_SUFFIXES
from keras_googlenet._internal.values import is_int


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
    fixed = {name: getattr(config, name) for name in _FIXED}
    return checks + [(_FIXED[name][0], value, False, f"{_FIXED[name][1](wanted)} {given}")
                     for name, value, wanted in argument_conflicts(entry, fixed)]
