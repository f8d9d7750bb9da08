"""Comma-separated list flags of the benchmarks' command lines (argparse `type=`s).

    p.add_argument("--widths", type=float_list, default=[1.0])
    p.add_argument("--precisions", type=choice_list(PRECISIONS), default=["float32"])
"""

import argparse


def csv_list(text):
    """`"a, b,,c"` -> `["a", "b", "c"]`."""
    return [s.strip() for s in str(text).split(",") if s.strip()]


def int_list(text):
    """`"1,2"` -> `[1, 2]`."""
    try:
        return [int(s) for s in csv_list(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def float_list(text):
    """`"0.5,1"` -> `[0.5, 1.0]`."""
    try:
        return [float(s) for s in csv_list(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def bool_list(text):
    """on/off, true/false or 1/0 values."""
    values = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
    try:
        return [values[s.lower()] for s in csv_list(text)]
    except KeyError as e:
        raise argparse.ArgumentTypeError(f"expected on/off values, got {text!r}") from e


def choice_list(allowed):
    """A parser of comma-separated values, each one of `allowed`."""
    def parse(text):
        values = csv_list(text)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad} not in {', '.join(allowed)}")
        return values

    return parse
