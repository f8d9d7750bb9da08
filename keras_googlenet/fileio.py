"""Atomic writes: the one place where the project writes a file or folder.

Everything the project writes (run configurations, histories, checkpoints,
exports, reports, benchmark JSON) goes through these helpers, so that a kill
at any moment leaves either the old content or the complete new content,
never a half-written file. Files and folders get the permissions any file the
user creates would get (`0o666` / `0o777` minus the umask), not the private
`0o600` / `0o700` of Python's temporary files.
"""

import contextlib
import json
import os
import shutil
import tempfile
import threading

#: Prefix of every temporary sibling this module creates; a folder may hold
#: stale ones after a kill (`remove_stale_temporaries` deletes them).
TMP_PREFIX = ".tmp-"

_umask_lock = threading.Lock()


def umask():
    """The process's current umask."""
    with _umask_lock:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def _chmod_default(path, directory=False):
    mode = (0o777 if directory else 0o666) & ~umask()
    os.chmod(path, mode)


def temporary_sibling(path):
    """A temporary path in `path`'s folder that keeps its file name (and suffix,
    which Keras checks: `.keras`, `.weights.h5`)."""
    head, tail = os.path.split(os.fspath(path))
    return os.path.join(head, f"{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{tail}")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary sibling of `path`; renames it over `path` on success.

    The caller writes the file (by any means, e.g. `model.save(tmp)`). On an
    exception the temporary file is removed and `path` is untouched.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if os.path.isfile(tmp):
            _chmod_default(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.remove(tmp)


def atomic_write_bytes(path, data):
    """Writes `data` to `path` through a temporary file renamed into place."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text):
    """Writes `text` (UTF-8) to `path` through a temporary file renamed into place."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, doc):
    """Writes `doc` as indented JSON (non-JSON values via `str`) to `path` atomically."""
    atomic_write_text(path, json.dumps(doc, indent=2, default=str) + "\n")


def atomic_save_model(model, path):
    """`model.save(path)` (a `.keras` file), atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def atomic_save_weights(model, path):
    """`model.save_weights(path)` (a `.weights.h5` file), atomically."""
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def remove_stale_temporaries(directory):
    """Deletes temporary siblings left in `directory` by a killed write."""
    if not os.path.isdir(directory):
        return
    for entry in os.scandir(directory):
        if entry.name.startswith(TMP_PREFIX):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.remove(entry.path)


class DestinationError(ValueError):
    """A folder cannot be written where the user asked; one line for the user."""


def check_destination(directory, overwrite=False):
    """Raises DestinationError if `directory` cannot receive new content."""
    directory = os.fspath(directory)
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise DestinationError(f"{directory!r} exists and is not a folder.")
    if os.path.isdir(directory) and any(os.scandir(directory)) and not overwrite:
        raise DestinationError(
            f"Folder {directory!r} already exists and is not empty; "
            "pass --overwrite (overwrite=True) to replace it."
        )


def _chmod_tree(root):
    _chmod_default(root, directory=True)
    for parent, dirs, files in os.walk(root):
        for d in dirs:
            _chmod_default(os.path.join(parent, d), directory=True)
        for f in files:
            path = os.path.join(parent, f)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                # Keep execute bits a writer set on purpose; otherwise the default.
                _chmod_default(path, directory=bool(mode & 0o111))


@contextlib.contextmanager
def atomic_directory(directory, overwrite=False):
    """Yields a temporary folder that replaces `directory` on success.

    The temporary folder is created next to `directory` (same file system) and
    renamed into place only when the `with` block finishes without an exception;
    otherwise it is deleted. An existing non-empty `directory` is refused unless
    `overwrite`, in which case it is moved aside, replaced, then deleted. So
    `directory` is always either the old content or the complete new content.
    The new tree gets the user's default permissions (umask respected).

    Raises:
        DestinationError: If `directory` is a file, or not empty without `overwrite`.
    """
    directory = os.path.abspath(os.fspath(directory))
    check_destination(directory, overwrite)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(directory)
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{base}-", dir=parent)
    try:
        yield tmp
        # Check again: something may have appeared while we were writing.
        check_destination(directory, overwrite)
        _chmod_tree(tmp)
        old = None
        if os.path.lexists(directory):
            old = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{base}-old-", dir=parent)
            os.rmdir(old)
            os.rename(directory, old)
        try:
            os.replace(tmp, directory)
        except BaseException:
            if old is not None:
                os.rename(old, directory)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
