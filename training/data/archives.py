"""Data folders given as archives: safe extraction into a cache, once.

`resolve_data_dir` turns `--data-dir` (a folder, or a `.tar*`/`.zip` archive
of one) into a folder. The extraction does not trust the archive, nor
`tarfile`'s own extraction filters (Python 3.11's "data" filter can be
bypassed by a chain of symbolic links longer than `PATH_MAX`,
CVE-2025-4517): every member is checked before anything is written, only
regular files and folders are extracted, each written by this module to a
path it computes itself from the member's name, and the total size is
capped. Extraction goes through `keras_googlenet._internal.fileio.atomic_directory`,
so a cached folder is always complete and a failed or interrupted
extraction leaves nothing behind.
"""

import contextlib
import hashlib
import lzma
import os
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from pathlib import Path, PureWindowsPath

from keras_googlenet._internal.fileio import (
    DestinationError, atomic_directory, remove_stale_temporaries,
)
from training.data.errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, extractions may race
    fcntl = None

#: Archive suffixes `resolve_data_dir` extracts.
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")

#: Where archives are extracted unless `cache_dir` or `$KERAS_GOOGLENET_CACHE` says otherwise.
DEFAULT_CACHE = "~/.cache/keras_googlenet"

#: Default cap on the extracted size of an archive, in MiB (`--max-extract-mb`).
DEFAULT_MAX_EXTRACT_MB = 4096
#: Default cap on extracted size / archive size (`--max-extract-ratio`). The
#: CIFAR-10 `train.tar.xz` expands about 5x; a deflated block of zeros, 1000x.
DEFAULT_MAX_EXTRACT_RATIO = 200.0
#: Archives may always expand to this many bytes, whatever their ratio.
RATIO_FREE_BYTES = 1 << 20
#: Each member counts at least this much (a tar header; an inode): an archive
#: of millions of empty files is not free.
MEMBER_BYTES = 512

_CHUNK = 1 << 20
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, lzma.LZMAError,
                zlib.error, EOFError, OSError, ValueError, OverflowError, NotImplementedError,
                RuntimeError)


def cache_root(cache_dir=None):
    """The project's cache folder: `cache_dir`, else `$KERAS_GOOGLENET_CACHE`, else
    `~/.cache/keras_googlenet` (extracted archives, precision measurements)."""
    return Path(cache_dir or os.environ.get("KERAS_GOOGLENET_CACHE") or DEFAULT_CACHE).expanduser()


def resolve_data_dir(path, cache_dir=None, *, max_extract_mb=DEFAULT_MAX_EXTRACT_MB,
                     max_extract_ratio=DEFAULT_MAX_EXTRACT_RATIO):
    """Turns a data folder or an archive of one into a folder holding `train/`.

    A folder is returned as is. A `.tar`, `.tar.gz`, `.tar.xz`, `.tar.bz2` or
    `.zip` archive is extracted once into a cache folder (`cache_dir`, else
    `$KERAS_GOOGLENET_CACHE`, else `~/.cache/keras_googlenet`) keyed by the
    archive's path, size and modification time. If the archive holds a single
    top folder that contains `train/`, that folder is returned.

    Image datasets need no links, so the archive is refused as a whole,
    before anything is written, if any member is a symbolic link, hard link,
    device, FIFO or other special file, or has a name that is absolute, has a
    drive letter, goes up with `..` or holds a control character. It is also
    refused if it expands to more than `max_extract_mb` MiB, or to more than
    `max_extract_ratio` times its own size (beyond a free 1 MiB): the sizes the
    archive declares are checked first, then the bytes actually written.
    Extraction goes to a temporary folder renamed into place, so the cache
    holds complete folders only; a failure (or Ctrl-C) removes the temporary
    folder, and one left by a killed process is removed by the next call.

    Args:
        path: A folder or an archive.
        cache_dir: Where archives are extracted.
        max_extract_mb: Cap on the extracted size, in MiB.
        max_extract_ratio: Cap on extracted size / archive size.

    Returns:
        A `pathlib.Path`.

    Raises:
        DataError: If the path is missing, not a supported archive, corrupt,
            unsafe, too large, or the cache cannot be written.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"data folder not found: {path}")
    if source.is_dir():
        return source
    if not source.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DataError(
            f"--data-dir must be a folder or a {'/'.join(ARCHIVE_SUFFIXES)} archive; got {path}"
        )
    cache = cache_root(cache_dir) / "archives"
    info = source.stat()
    key = hashlib.sha256(
        f"{source.resolve()}|{info.st_size}|{info.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    target = cache / f"{source.name}-{key}"
    if not target.is_dir():
        budget = _Budget(source, info.st_size, max_extract_mb, max_extract_ratio)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with _locked(cache):
                if not target.is_dir():
                    remove_stale_temporaries(cache)  # left by a killed extraction
                    with atomic_directory(target) as tmp:
                        _extract(source, Path(tmp), budget)
        except DestinationError:  # another process extracted it first
            if not target.is_dir():
                raise
        except OSError as e:
            raise DataError(f"cannot extract {source} into the cache folder {cache} "
                            f"({_why(e)}); pass --cache-dir DIR") from e
    subdirs = [p for p in target.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not (target / "train").is_dir() and len(subdirs) == 1 and (subdirs[0] / "train").is_dir():
        return subdirs[0]
    return target


def control_characters(name):
    """The control (or undecodable) characters of `name`, as a string."""
    return "".join(c for c in name if unicodedata.category(c) in ("Cc", "Cs"))


@contextlib.contextmanager
def _locked(folder):
    """Holds an exclusive lock on `folder` (released by the OS if the process dies)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _why(error):
    return " ".join(str(error).split()) or type(error).__name__


class _Budget:
    """The bytes an archive may expand to: declared sizes first, then written bytes."""

    def __init__(self, archive, archive_bytes, max_mb, max_ratio):
        self.archive = archive
        by_size = int(max_mb * 2**20)
        by_ratio = int(max(max_ratio * archive_bytes, RATIO_FREE_BYTES))
        self.limit = min(by_size, by_ratio)
        if by_size <= by_ratio:
            self.rule = f"the limit of {max_mb:g} MiB (--max-extract-mb)"
        else:
            self.rule = (f"{max_ratio:g} times its size of {archive_bytes / 2**20:.2f} MiB "
                         "(--max-extract-ratio)")
        self.declared = self.written = 0

    def declare(self, size):
        self.declared += max(size, 0) + MEMBER_BYTES
        self._check(self.declared)

    def spend(self, size):
        self.written += size
        self._check(self.written)

    def _check(self, total):
        if total > self.limit:
            raise DataError(
                f"refusing to extract {self.archive}: it expands to more than {self.rule}; "
                "if you trust it, raise that limit or extract it yourself and pass the folder"
            )


def _extract(archive, dest, budget):
    """Extracts `archive` into the empty folder `dest`, refusing unsafe members."""
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, dest, budget)
        else:
            _extract_tar(archive, dest, budget)
    except DataError:
        raise
    except _READ_ERRORS as e:
        raise DataError(f"cannot read archive {archive}: corrupt or truncated ({_why(e)})") from e


def _refuse(archive, member, why):
    raise DataError(f"refusing to extract {archive}: member {member!r} {why}")


def _member_parts(archive, name):
    """The path components of member `name` under the extraction folder (checked)."""
    if control_characters(name):
        _refuse(archive, name, "has a control character in its name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(name).drive:
        _refuse(archive, name, "has an absolute path")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        _refuse(archive, name, "escapes the extraction folder ('..')")
    return parts


_LINKS_REFUSED = "(only regular files and folders are extracted; archives with links or " \
                 "special files are refused)"


def _tar_kind(member):
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.issparse():
        return "a sparse file"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    if member.isfile() or member.isdir():
        return None
    return f"a special member (tar type {member.type!r})"


def _zip_kind(info):
    if info.flag_bits & 0x1:
        return "encrypted"
    mode = info.external_attr >> 16
    if not stat.S_IFMT(mode) or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "a symbolic link" if stat.S_ISLNK(mode) else "a special file"


def _extract_tar(archive, dest, budget):
    with tarfile.open(archive) as tar:
        members = []
        while (member := tar.next()) is not None:  # header by header: refuse early
            parts = _member_parts(archive, member.name)
            kind = _tar_kind(member)
            if kind is not None:
                _refuse(archive, member.name, f"is {kind} {_LINKS_REFUSED}")
            budget.declare(member.size if member.isfile() else 0)
            members.append((member, parts))
        for member, parts in members:
            if member.isdir():
                _make_dirs(archive, member.name, dest, parts)
            else:
                with tar.extractfile(member) as src:
                    _write_file(archive, member.name, src, dest, parts, budget)


def _extract_zip(archive, dest, budget):
    with zipfile.ZipFile(archive) as zf:
        members = []
        for info in zf.infolist():
            parts = _member_parts(archive, info.filename)
            kind = _zip_kind(info)
            if kind is not None:
                _refuse(archive, info.filename, f"is {kind} {_LINKS_REFUSED}")
            budget.declare(0 if info.is_dir() else info.file_size)
            members.append((info, parts))
        for info, parts in members:
            if info.is_dir():
                _make_dirs(archive, info.filename, dest, parts)
            else:  # zipfile checks each member's CRC as it reads it
                with zf.open(info) as src:
                    _write_file(archive, info.filename, src, dest, parts, budget)


@contextlib.contextmanager
def _writing(archive, name):
    """Turns a failure to write member `name` (disk full, name too long) into a DataError."""
    try:
        yield
    except OSError as e:
        raise DataError(f"cannot extract {archive}: member {name!r} cannot be written "
                        f"({_why(e)})") from e


def _make_dirs(archive, name, dest, parts):
    with _writing(archive, name):
        os.makedirs(dest.joinpath(*parts), exist_ok=True)


def _write_file(archive, name, src, dest, parts, budget):
    """Copies `src` to `dest/parts`, counting the bytes against `budget`."""
    if not parts:
        _refuse(archive, name, "is a file without a name")
    _make_dirs(archive, name, dest, parts[:-1])
    with _writing(archive, name):
        out = open(os.open(dest.joinpath(*parts), _WRITE_FLAGS, 0o666), "wb")
    try:
        while chunk := src.read(_CHUNK):  # read errors: corrupt archive
            budget.spend(len(chunk))
            with _writing(archive, name):
                out.write(chunk)
    finally:
        with _writing(archive, name):
            out.close()
