"""Command-line plumbing shared by the project's scripts (training, export, tuner).

Every CLI of the project answers bad input with one line on stderr and a
non-zero exit status, never argparse's usage dump or a traceback.
"""

import argparse


class UsageError(Exception):
    """A bad command line; the message is one line for the user (exit status 2)."""


class OneLineParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` that raises `UsageError` instead of printing usage."""

    def error(self, message):
        raise UsageError(message)


def one_line(error, limit=300):
    """`error`'s message squeezed onto one line (at most `limit` characters)."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
