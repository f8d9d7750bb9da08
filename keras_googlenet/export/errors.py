"""The export's user-facing error, and the atomic export folder that raises it."""

import contextlib

from keras_googlenet._internal.fileio import DestinationError, atomic_directory, check_destination


class ExportError(Exception):
    """A problem with the user's input to the export (one-line message)."""


def one_line(error, limit=300):
    """`"Type: message"` of `error` squeezed onto one line (at most `limit` characters)."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _export_error(error):
    text = str(error)
    return ExportError(f"Export {text[:1].lower()}{text[1:]}")


def check_export_destination(directory, overwrite=False):
    """Raises ExportError if `directory` cannot receive an export."""
    try:
        check_destination(directory, overwrite)
    except DestinationError as e:
        raise _export_error(e) from e


@contextlib.contextmanager
def export_directory(directory, overwrite=False):
    """`keras_googlenet._internal.fileio.atomic_directory`, raising ExportError for a bad destination.

    Yields a temporary folder that replaces `directory` only when the `with`
    block succeeds, so `directory` is either the old content or a complete
    export; the tree gets the user's default permissions (umask respected).
    """
    check_export_destination(directory, overwrite)
    try:
        with atomic_directory(directory, overwrite) as tmp:
            yield tmp
    except DestinationError as e:  # something appeared there while exporting
        raise _export_error(e) from e
