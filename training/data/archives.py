"""Data folders given as archives: safe extraction into a cache, once.

`resolve_data_dir` turns `--data-dir` (a folder, or a `.tar*`/`.zip` archive
of one) into a folder. Archives are checked member by member before anything
is written, and extracted through `keras_googlenet.fileio.atomic_directory`,
so a cached folder is always complete.
"""

import hashlib
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from keras_googlenet.fileio import DestinationError, atomic_directory
from training.data.errors import DataError

#: Archive suffixes `resolve_data_dir` extracts.
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")

#: Where archives are extracted unless `cache_dir` or `$KERAS_GOOGLENET_CACHE` says otherwise.
DEFAULT_CACHE = "~/.cache/keras_googlenet"


def resolve_data_dir(path, cache_dir=None):
    """Turns a data folder or an archive of one into a folder holding `train/`.

    A folder is returned as is. A `.tar`, `.tar.gz`, `.tar.xz`, `.tar.bz2` or
    `.zip` archive is extracted once into a cache folder (`cache_dir`, else
    `$KERAS_GOOGLENET_CACHE`, else `~/.cache/keras_googlenet`) keyed by the
    archive's path, size and modification time; extraction goes to a temporary
    folder renamed into place, so a cached folder is always complete. Members
    that would land outside the extraction folder (`../x`, absolute paths,
    links pointing outside, device files) make the whole archive refused
    before anything is written. If the archive holds a single top folder that
    contains `train/`, that folder is returned.

    Args:
        path: A folder or an archive.
        cache_dir: Where archives are extracted.

    Returns:
        A `pathlib.Path`.

    Raises:
        DataError: If the path is missing, not a supported archive, corrupt or unsafe.
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
    cache = Path(
        cache_dir or os.environ.get("KERAS_GOOGLENET_CACHE") or DEFAULT_CACHE
    ).expanduser() / "archives"
    info = source.stat()
    key = hashlib.sha256(
        f"{source.resolve()}|{info.st_size}|{info.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    target = cache / f"{source.name}-{key}"
    if not target.is_dir():
        try:
            with atomic_directory(target) as tmp:
                _extract(source, Path(tmp))
        except DestinationError:  # another process extracted it first
            if not target.is_dir():
                raise
    subdirs = [p for p in target.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not (target / "train").is_dir() and len(subdirs) == 1 and (subdirs[0] / "train").is_dir():
        return subdirs[0]
    return target


def _extract(archive, dest):
    """Extracts `archive` into the empty folder `dest`, refusing unsafe members."""
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            _extract_zip(archive, dest)
        else:
            _extract_tar(archive, dest)
    except DataError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error, EOFError,
            OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read archive {archive}: corrupt or truncated ({reason})") from e


def _refuse(archive, member, why):
    raise DataError(f"refusing to extract {archive}: member {member!r} {why}")


def _extract_tar(archive, dest):
    with tarfile.open(archive) as tar:
        members = tar.getmembers()  # reads the whole archive: corruption shows up here
        for m in members:
            if m.name.startswith("/") or PureWindowsPath(m.name).is_absolute():
                _refuse(archive, m.name, "has an absolute path")
            try:
                # The "data" filter (PEP 706) refuses paths and link targets that
                # leave `dest` and special files; check all before writing any.
                tarfile.data_filter(m, str(dest))
            except tarfile.FilterError as e:
                _refuse(archive, m.name, f"is unsafe ({type(e).__name__}: {e})")
        tar.extractall(dest, members=members, filter="data")


def _extract_zip(archive, dest):
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename
            posix = PurePosixPath(name.replace("\\", "/"))
            if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
                _refuse(archive, name, "has an absolute path")
            if ".." in posix.parts:
                _refuse(archive, name, "escapes the extraction folder")
            if stat.S_ISLNK(info.external_attr >> 16):
                _refuse(archive, name, "is a symbolic link")
        corrupt = zf.testzip()  # checks every member's CRC
        if corrupt is not None:
            raise DataError(f"cannot read archive {archive}: member {corrupt!r} is corrupt")
        zf.extractall(dest)
