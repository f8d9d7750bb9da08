"""Hostile archives given as --data-dir or --calibration-data: nothing is written outside.

Every attack is built for tar, tar.gz, tar.xz and zip. Each must end in a
one-line `DataError` naming the member, leave the temporary tree exactly as it
was (apart from the empty cache folder) and leave no partial extraction.
"""

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from training_helpers import CIFAR_ARCHIVE, make_archive, make_image_folder, run_module

from training.config import ConfigError, TrainConfig
from training.data import DataError, archives, resolve_data_dir

FORMATS = ("tar", "tar.gz", "tar.xz", "zip")
_TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tar.xz": "w:xz"}

# ---- building archives ----------------------------------------------------------
# Members are tuples: ("dir", name), ("file", name, data), ("sym", name, target),
# ("hard", name, target), ("chr", name), ("fifo", name).


def write_archive(path, members):
    """Writes `members` as a tar (by suffix: .tar, .tar.gz, .tar.xz) or a zip."""
    path = Path(path)
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for kind, name, *rest in members:
                data = rest[0] if rest else b""
                info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""))
                info.create_system = 3  # Unix: external_attr holds st_mode
                mode = {"dir": stat.S_IFDIR | 0o755, "file": stat.S_IFREG | 0o644,
                        "sym": stat.S_IFLNK | 0o777, "hard": stat.S_IFLNK | 0o777,
                        "chr": stat.S_IFCHR | 0o644, "fifo": stat.S_IFIFO | 0o644}[kind]
                info.external_attr = mode << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data.encode() if isinstance(data, str) else data)
        return path
    mode = _TAR_MODES[next(s for s in _TAR_MODES if path.name.endswith("." + s))]
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for kind, name, *rest in members:
            info = tarfile.TarInfo(name)
            info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "sym": tarfile.SYMTYPE,
                         "hard": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            if kind == "file":
                info.size = len(rest[0])
                tar.addfile(info, io.BytesIO(rest[0]))
            else:
                if kind in ("sym", "hard"):
                    info.linkname = rest[0]
                tar.addfile(info)
    return path


def symlink_chain():
    """The CVE-2025-4517 archive: links whose resolved path exceeds PATH_MAX, then an escape.

    Relative to the extraction folder `tmp/cache/archives/.tmp-*`, `escape`
    points at `tmp/outside`; Python 3.11.7's "data" filter computes a wrong
    real path for it and lets `escape/pwned` be written there.
    """
    comp, steps, members, path = "d" * 247, "abcdefghijklmnop", [], ""
    for step in steps:
        members += [("dir", os.path.join(path, comp)), ("sym", os.path.join(path, step), comp)]
        path = os.path.join(path, comp)
    long_link = os.path.join(*steps, "l" * 254)
    return members + [
        ("sym", long_link, "../" * len(steps)),
        ("sym", "escape", long_link + "/" + "../" * 3 + "outside"),
        ("file", "escape/pwned", b"pwned"),
    ]


GOOD = [("file", "train/cat/0.txt", b"ok")]


def attack(name, outside):
    """`(members, name of the member the error must name)` of each attack."""
    return {
        "symlink_chain": (symlink_chain(), "a"),
        "symlink_escape": (GOOD + [("sym", "train/evil", str(outside)),
                                   ("file", "train/evil/pwned", b"pwned")], "train/evil"),
        "symlink_relative": (GOOD + [("sym", "train/up", "../../../../outside"),
                                     ("file", "train/up/pwned", b"pwned")], "train/up"),
        "hardlink_passwd": (GOOD + [("hard", "train/cat/passwd", "/etc/passwd")],
                            "train/cat/passwd"),
        "hardlink_relative": (GOOD + [("hard", "train/cat/p", "../../../../../../etc/passwd")],
                              "train/cat/p"),
        "dotdot": (GOOD + [("file", "../x", b"evil")], "../x"),
        "dotdot_nested": (GOOD + [("file", "train/../../../outside/x", b"evil")],
                          "train/../../../outside/x"),
        "backslash_dotdot": (GOOD + [("file", "..\\..\\..\\outside\\x", b"evil")],
                             "..\\..\\..\\outside\\x"),
        "absolute": (GOOD + [("file", str(outside / "abs"), b"evil")], str(outside / "abs")),
        "drive_letter": (GOOD + [("file", "C:/x", b"evil")], "C:/x"),
        "control_char": (GOOD + [("file", "train/ca\nt/0.txt", b"x")], "train/ca\nt/0.txt"),
        "device": (GOOD + [("chr", "train/cat/null")], "train/cat/null"),
        "fifo": (GOOD + [("fifo", "train/cat/pipe")], "train/cat/pipe"),
    }[name]


ATTACKS = ("symlink_chain", "symlink_escape", "symlink_relative", "hardlink_passwd",
           "hardlink_relative", "dotdot", "dotdot_nested", "backslash_dotdot", "absolute",
           "drive_letter", "control_char", "device", "fifo")


def tree(folder):
    """`{relative path: (kind, content hash or link target)}` of everything under `folder`."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir", None)
            else:
                with open(path, "rb") as f:
                    found[rel] = ("file", hashlib.sha256(f.read()).hexdigest())
    return found


@pytest.fixture
def layout(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("untouched")
    return tmp_path


def assert_refused(call, tmp_path, match, before):
    with pytest.raises(DataError, match=match) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and "\r" not in message
    after = tree(tmp_path)
    new = {k: v for k, v in after.items() if k not in before}
    assert new == {"cache": ("dir", None), os.path.join("cache", "archives"): ("dir", None)}
    assert all(after[k] == v for k, v in before.items())  # nothing changed or removed
    return message


# ---- links, paths and special members ---------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ATTACKS)
def test_hostile_members_are_refused_and_nothing_is_written(layout, name, fmt):
    members, culprit = attack(name, layout / "outside")
    archive = write_archive(layout / "work" / f"bad.{fmt}", members)
    before = tree(layout)
    message = assert_refused(lambda: resolve_data_dir(archive, layout / "cache"), layout,
                             "refusing to extract", before)
    assert f"member {culprit!r}" in message
    assert not (layout / "outside" / "pwned").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_links_are_refused_even_inside_the_folder(layout, fmt):
    archive = write_archive(layout / "work" / f"d.{fmt}",
                            GOOD + [("sym", "train/cat/1.txt", "0.txt")])
    with pytest.raises(DataError, match=r"'train/cat/1.txt' is a symbolic link \(only regular"):
        resolve_data_dir(archive, layout / "cache")


def test_the_export_calibration_path_refuses_the_symlink_chain(layout, monkeypatch):
    from keras_googlenet.export import ExportError
    from training.export import resolve_image_dir

    monkeypatch.setenv("KERAS_GOOGLENET_CACHE", str(layout / "cache"))
    archive = write_archive(layout / "work" / "calib.tar", symlink_chain())
    before = tree(layout)
    with pytest.raises(ExportError, match="refusing to extract .* symbolic link") as raised:
        resolve_image_dir(archive)
    assert "\n" not in str(raised.value)
    assert not (layout / "outside" / "pwned").exists()
    assert {k for k in tree(layout) if k not in before} == {"cache", "cache/archives"}


@pytest.mark.slow
def test_cli_refuses_the_symlink_chain_in_one_line(layout):
    archive = write_archive(layout / "work" / "chain.tar.xz", symlink_chain())
    before = tree(layout)
    result = run_module(["--data-dir", str(archive), "--cache-dir", str(layout / "cache"),
                         "--runs-dir", str(layout / "runs"), "--epochs", "1"], cwd=layout / "work")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refusing to extract" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (layout / "outside" / "pwned").exists()
    # The cache, and the runs folder the command names (its run lock lives there).
    assert {k for k in tree(layout) if k not in before} <= {"cache", "cache/archives", "runs"}


# ---- expansion --------------------------------------------------------------------

ZEROS = b"\0" * (30 << 20)  # 30 MiB: deflates/xz-compresses to a few KB


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.xz", "zip"])
def test_compression_bombs_are_refused_before_writing(layout, fmt):
    archive = write_archive(layout / "work" / f"bomb.{fmt}", GOOD + [("file", "train/z", ZEROS)])
    assert archive.stat().st_size < 200_000
    before = tree(layout)
    message = assert_refused(lambda: resolve_data_dir(archive, layout / "cache"), layout,
                             "expands to more than 200 times its size", before)
    assert "--max-extract-ratio" in message


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_sparse_member_bomb_in_a_plain_tar_is_refused(layout):
    sparse = layout / "src" / "train" / "cat" / "hole.bin"
    sparse.parent.mkdir(parents=True)
    with open(sparse, "wb") as f:
        f.truncate(8 << 30)  # 8 GiB of hole: a few KB in the archive
    archive = layout / "work" / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(archive), "-C", str(layout / "src"), "train"],
                   check=True)
    shutil.rmtree(layout / "src")
    assert archive.stat().st_size < 100_000
    before = tree(layout)
    assert_refused(lambda: resolve_data_dir(archive, layout / "cache"), layout,
                   "'train/cat/hole.bin' is a sparse file", before)


def test_size_cap_and_its_flag(layout):
    payload = os.urandom(2 << 20)  # incompressible: the ratio allows it, 1 MiB does not
    archive = write_archive(layout / "work" / "big.tar.gz", [("file", "train/cat/0.bin", payload)])
    before = tree(layout)
    assert_refused(lambda: resolve_data_dir(archive, layout / "cache", max_extract_mb=1), layout,
                   r"more than the limit of 1 MiB \(--max-extract-mb\)", before)
    folder = resolve_data_dir(archive, layout / "cache")  # the default cap allows it
    assert (folder / "train" / "cat" / "0.bin").read_bytes() == payload


def test_many_empty_members_count_against_the_cap(layout):
    archive = write_archive(layout / "work" / "inodes.tar.xz",
                            [("file", f"train/c/{i}", b"") for i in range(3000)])
    before = tree(layout)
    assert_refused(lambda: resolve_data_dir(archive, layout / "cache", max_extract_mb=1), layout,
                   "expands to more than", before)


def test_tar_header_claiming_a_huge_size_is_refused(layout):
    archive = layout / "work" / "liar.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("train/cat/huge")
        info.size = 64 << 30  # 64 GiB declared, nothing stored
        tar.addfile(info)
    before = tree(layout)
    assert_refused(lambda: resolve_data_dir(archive, layout / "cache"), layout,
                   "refusing to extract .* expands to more than", before)


def test_zip_whose_directory_understates_a_member_is_refused(layout):
    archive = write_archive(layout / "work" / "liar.zip", GOOD + [("file", "train/z", ZEROS)])
    data = bytearray(archive.read_bytes())
    entry = data.rfind(b"PK\x01\x02")  # the central directory entry of train/z
    data[entry + 24:entry + 28] = (1000).to_bytes(4, "little")  # uncompressed size: 1000
    archive.write_bytes(bytes(data))
    before = tree(layout)
    assert_refused(lambda: resolve_data_dir(archive, layout / "cache"), layout,
                   "cannot read archive .*corrupt", before)


def test_written_bytes_are_counted_when_headers_lie(layout, monkeypatch):
    monkeypatch.setattr(archives._Budget, "declare", lambda self, size: None)
    archive = write_archive(layout / "work" / "big.tar", [("file", "train/a", os.urandom(3 << 20))])
    before = tree(layout)
    assert_refused(lambda: resolve_data_dir(archive, layout / "cache", max_extract_mb=1), layout,
                   "expands to more than", before)


@pytest.mark.parametrize("fmt", ["tar.xz", "zip"])
def test_interrupted_extraction_leaves_nothing(layout, monkeypatch, fmt):
    calls = []
    real = archives._write_file

    def interrupt_on_second_file(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(archives, "_write_file", interrupt_on_second_file)
    archive = write_archive(layout / "work" / f"d.{fmt}",
                            [("file", f"train/c/{i}", b"x") for i in range(3)])
    with pytest.raises(KeyboardInterrupt):
        resolve_data_dir(archive, layout / "cache")
    assert len(calls) == 2 and not list((layout / "cache" / "archives").iterdir())


def test_leftovers_of_a_killed_extraction_are_removed(layout):
    stale = layout / "cache" / "archives" / ".tmp-old.tar-0123-abcd"
    (stale / "train").mkdir(parents=True)
    archive = write_archive(layout / "work" / "d.tar", GOOD + [("file", "train/dog/0.txt", b"1")])
    folder = resolve_data_dir(archive, layout / "cache")
    assert not stale.exists() and (folder / "train" / "dog" / "0.txt").read_bytes() == b"1"


@pytest.mark.parametrize("kind", ["file", "read_only"])
def test_unusable_cache_folder_is_one_line(layout, kind):
    archive = write_archive(layout / "work" / "d.tar", GOOD)
    cache = layout / "cache"
    if kind == "file":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        cache.chmod(0o500)
        if os.access(cache, os.W_OK):  # root ignores permissions
            pytest.skip("running as root")
    try:
        with pytest.raises(DataError, match="cannot extract .* cache folder") as raised:
            resolve_data_dir(archive, cache)
    finally:
        if cache.is_dir():
            cache.chmod(0o700)
    assert "\n" not in str(raised.value)


# ---- what must keep working --------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_dot_prefixed_members_and_folder_entries_extract(layout, fmt):
    archive = write_archive(layout / "work" / f"d.{fmt}", [
        ("dir", "."), ("dir", "./train"), ("dir", "./train/cat"),
        ("file", "./train/cat/0.txt", b"0"), ("file", "train//dog/./1.txt", b"1"),
    ])
    folder = resolve_data_dir(archive, layout / "cache")
    assert (folder / "train" / "cat" / "0.txt").read_bytes() == b"0"
    assert (folder / "train" / "dog" / "1.txt").read_bytes() == b"1"


def test_image_archive_round_trip(layout):
    data = make_image_folder(layout / "data", per_class=2)
    archive = make_archive(data, layout / "work" / "d.tar.xz", top="top")
    folder = resolve_data_dir(archive, layout / "cache")
    assert folder.name == "top" and len(list((folder / "train").rglob("*.png"))) == 6


def test_defaults_accept_the_real_cifar_archive_comfortably():
    # CI has ../shared beside the checkout; a git worktree has it further up.
    cifar = next((parent / CIFAR_ARCHIVE.relative_to(CIFAR_ARCHIVE.parents[3])
                  for parent in CIFAR_ARCHIVE.parents[3:] if (parent / "shared").is_dir()), None)
    assert cifar is not None and cifar.is_file(), f"this test needs {CIFAR_ARCHIVE}"
    size = cifar.stat().st_size
    budget = archives._Budget(cifar, size, archives.DEFAULT_MAX_EXTRACT_MB,
                              archives.DEFAULT_MAX_EXTRACT_RATIO)
    with tarfile.open(cifar) as tar:
        for member in tar:
            budget.declare(member.size)
    assert budget.declared < budget.limit / 10  # ~5x expansion against a 200x limit


def test_config_defaults_and_validation_of_the_caps():
    config = TrainConfig()
    assert config.max_extract_mb == archives.DEFAULT_MAX_EXTRACT_MB
    assert config.max_extract_ratio == archives.DEFAULT_MAX_EXTRACT_RATIO
    for field, value in [("max_extract_mb", 0), ("max_extract_mb", 1.5),
                         ("max_extract_ratio", 0.5), ("max_extract_ratio", float("inf")),
                         ("max_extract_ratio", float("nan")), ("max_extract_ratio", "9")]:
        with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} must be"):
            TrainConfig(**{field: value}).validate()
    changed = TrainConfig(max_extract_mb=10)
    assert TrainConfig().resume_differences(changed) == []  # not part of the trained state


def test_cli_flags_reach_the_config():
    from training.cifar import config_from_args

    config = config_from_args(["--max-extract-mb", "10", "--max-extract-ratio", "50"])
    assert (config.max_extract_mb, config.max_extract_ratio) == (10, 50.0)
