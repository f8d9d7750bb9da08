"""The one integer check of every validation (library, training run, tuner), and the
error of an invalid argument.

Standard library only, at the bottom of the library's layers, so that
`architecture`, `config` and the scripts above the library all use it.
"""

import numbers


def is_int(value, numpy=False):
    """Whether `value` is an integer: a Python int, never a bool.

    With `numpy=True`, numpy integers count too (the library's arguments take
    them, and convert them with `int`); without, they do not (a training run's
    settings are written to JSON, which only holds Python ints).
    """
    if isinstance(value, bool):
        return False
    return isinstance(value, numbers.Integral) if numpy else isinstance(value, int)


def invalid_argument(argument, requirement, value):
    """The `ValueError` of an invalid `GoogLeNet` argument.

    Its message is `"`argument` must be <requirement>. Received: argument=<value>"`,
    and it keeps `argument`, `requirement` and `value` as attributes, so that a
    command line can say the same with its flag's name (`training.config` does).
    A plain `ValueError`, as keras.applications raise.
    """
    error = ValueError(f"`{argument}` must be {requirement}. Received: {argument}={value!r}")
    error.argument, error.requirement, error.value = argument, requirement, value
    return error
