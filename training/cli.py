"""Command-line plumbing shared by the project's scripts (training, export, tuner).

Every CLI of the project answers bad input with one line on stderr and a
non-zero exit status, never argparse's usage dump or a traceback.
"""

import argparse
import sys

#: Actions for which giving a flag more than once is meaningful.
_REPEATABLE = (argparse._AppendAction, argparse._AppendConstAction, argparse._CountAction,
               argparse._ExtendAction)


class UsageError(Exception):
    """A bad command line; the message is one line for the user (exit status 2)."""


class OneLineParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` that raises `UsageError` instead of printing usage.

    It also refuses what argparse silently accepts: abbreviated flags
    (`--over` for `--overwrite`; `allow_abbrev=False`) and a flag given twice
    (argparse keeps the last value; `--export --no-export` counts as twice).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        seen = {}
        for token in args:
            if token == "--":
                break
            action = self._option_string_actions.get(token.split("=", 1)[0])
            if action is None or isinstance(action, _REPEATABLE):
                continue
            if action in seen:
                self.error(f"{'/'.join(action.option_strings)} was given twice "
                           f"({seen[action]}, {token}); give it once")
            seen[action] = token
        return super().parse_known_args(args, namespace)


#: The flag every CLI has to show framework logging (hidden by default).
FRAMEWORK_LOGS_FLAGS = ("-v", "--framework-logs")


def add_framework_logs_flag(group):
    """Adds `-v/--framework-logs` to an argparse group."""
    group.add_argument(*FRAMEWORK_LOGS_FLAGS, action="store_true", dest="framework_logs",
                       help="also show TensorFlow/absl/TFLite logging (hidden by default)")


def import_backend_quietly(argv):
    """Imports Keras and its backend with framework noise hidden, unless `argv` asks
    for it with -v/--framework-logs (looked up before parsing, since parsing may
    already need the backend)."""
    from keras_googlenet._internal.logs import import_backend

    import_backend(verbose=any(arg in FRAMEWORK_LOGS_FLAGS for arg in argv))


def one_line(error, limit=300):
    """`error`'s message squeezed onto one line (at most `limit` characters)."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
