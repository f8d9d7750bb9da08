"""Atomic writes: the one place where the project writes a file or folder.

Everything the project writes (run configurations, histories, checkpoints,
exports, reports, benchmark JSON) goes through these helpers, so that a kill
at any moment leaves either the old content or the complete new content,
never a half-written file. Files and folders get the permissions any file the
user creates would get (`0o666` / `0o777` minus the umask), not the private
`0o600` / `0o700` of Python's temporary files.
"""

import contextlib
import ctypes
import errno
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import unicodedata

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


#: Unicode categories a class name may not hold: control (NUL, ESC, VT, FF, NEL ...),
#: format (U+202E right-to-left override ...), line and paragraph separators (U+2028,
#: which some readers count as a line break) and lone surrogates (undecodable bytes).
LABEL_FORBIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")


def label_forbidden_characters(name):
    """The characters of `name` that a class name may not hold (see
    `LABEL_FORBIDDEN_CATEGORIES`), as a string: one rule for training's class
    folders and the export's `labels.txt` and TFLite metadata."""
    return "".join(c for c in name if unicodedata.category(c) in LABEL_FORBIDDEN_CATEGORIES)


def parse_json(text):
    """`json.loads(text)`, its every failure a ValueError: also a document nested
    too deeply for the parser (which raises RecursionError).

    Raises:
        ValueError: If `text` is not JSON or is nested too deeply.
    """
    try:
        return json.loads(text)
    except RecursionError as e:
        raise ValueError("the JSON is nested too deeply") from e


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary sibling of `path`; renames it over `path` on success.

    The caller writes the file (by any means, e.g. `model.save(tmp)`). On an
    exception the temporary file is removed and `path` is untouched; an
    `OSError` that names no file (a failed `write`: a full disk) is raised
    naming `path`.
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
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, path) from e
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
    """`model.save_weights(path)` (a `.weights.h5` file), atomically.

    The HDF5 file is built in memory and then written like any other file: a
    write that fails inside HDF5 (a full disk, above all) leaves h5py's objects
    broken, and the process ends in a flood of "Exception ignored" tracebacks
    and a segmentation fault; written here, a full disk is an `OSError`
    (`errno.ENOSPC`) that leaves `path` as it was.

    Raises:
        OSError: If the file cannot be written.
    """
    if not model.built:
        raise ValueError(f"cannot save the weights of a model that is not built. Received: "
                         f"model={model.name!r}")
    data = _weights_h5_bytes(model)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def _weights_h5_bytes(model):
    """The bytes of `model.save_weights`'s `.weights.h5` file, made in memory.

    Keras 3's own `save_weights` writes only to a path; its store accepts an
    `io.BytesIO` (Keras uses one inside `.keras` archives), so this is
    `keras.src.saving.saving_lib.save_weights_only` writing to one.
    """
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables=set())
    finally:
        store.close()
    return buffer.getbuffer()


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


def temporary_directory_sibling(directory, role=""):
    """Creates and returns an empty temporary folder next to `directory`.

    Its name, `.tmp-<pid>-<name>-<role><random>`, records this process's id,
    so that `remove_stale_siblings(directory)` can delete it after a kill.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent, base = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{base}-{role}", dir=parent)


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def remove_stale_siblings(directory):
    """Deletes the temporary siblings of `directory` left by killed processes.

    Only folders and files named by `temporary_directory_sibling(directory)` whose
    process is no longer alive are removed (a concurrent writer's are kept).
    Process ids are those of this machine: on a folder shared between machines,
    a writer on another machine could lose its temporary folder, so do not
    write the same export from two machines at once.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent, base = os.path.split(directory)
    # mkdtemp's random part has no "-", so "NAME-other" siblings never match NAME.
    pattern = re.compile(rf"{re.escape(TMP_PREFIX)}(\d+)-{re.escape(base)}-[A-Za-z0-9_]+")
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not _process_alive(int(match.group(1))):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(entry.path)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2():
    """libc's `renameat2`, or None where there is none (not Linux, glibc < 2.28)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange_paths(a, b):
    """Atomically swaps the paths `a` and `b` (both must exist); returns whether it could.

    Uses Linux's `renameat2(..., RENAME_EXCHANGE)`; returns False (having done
    nothing) where the system or the file system does not support it.

    Raises:
        OSError: If the exchange is supported but failed.
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(b))


def _replace_directory(tmp, directory):
    """Puts the tree `tmp` at `directory`, so that a kill leaves the old or the new tree there.

    An existing `directory` is swapped with `tmp` in one atomic exchange, then
    deleted (from `tmp`, where it now is). Without an atomic exchange (not
    Linux, or a file system without it) the old tree is renamed aside and the
    new one renamed in: a kill between the two renames leaves no tree at
    `directory`, and the old one in a `.tmp-*` sibling.
    """
    if not os.path.lexists(directory):
        os.replace(tmp, directory)
    elif exchange_paths(tmp, directory):
        shutil.rmtree(tmp, ignore_errors=True)  # the old tree
    else:
        old = temporary_directory_sibling(directory, "old")
        os.rmdir(old)
        os.rename(directory, old)
        try:
            os.replace(tmp, directory)
        except BaseException:
            os.rename(old, directory)
            raise
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(directory, overwrite=False):
    """Yields a temporary folder that replaces `directory` on success.

    The temporary folder is created next to `directory` (same file system) and
    renamed into place only when the `with` block finishes without an exception;
    otherwise it is deleted. An existing non-empty `directory` is refused unless
    `overwrite`, in which case it is atomically exchanged with the new tree (on
    Linux; elsewhere moved aside first, see `_replace_directory`), then deleted.
    So a kill at any instant leaves either the old content or the complete new
    content at `directory`. Temporary siblings that killed processes left
    behind are deleted first (`remove_stale_siblings`). The new tree gets the
    user's default permissions (umask respected).

    Raises:
        DestinationError: If `directory` is a file, or not empty without `overwrite`.
    """
    directory = os.path.abspath(os.fspath(directory))
    check_destination(directory, overwrite)
    remove_stale_siblings(directory)
    tmp = temporary_directory_sibling(directory)
    try:
        yield tmp
        # Check again: something may have appeared while we were writing.
        check_destination(directory, overwrite)
        _chmod_tree(tmp)
        _replace_directory(tmp, directory)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
