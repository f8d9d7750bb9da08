"""training.data's shares: in a run over N processes each one decodes only its share.

`load(config, shard=(i, N))` takes examples `i::N` of the training and of the
held-out split, after the split, before decoding. The multi-process runs
themselves are in tests/test_distributed.py.
"""

import numpy as np
import pytest
from training_helpers import make_image_folder

from training.config import TrainConfig
from training.data import sources
from training.data.sources import load


def _config(tmp_path, **fields):
    fields = {"image_size": 16, "val_fraction": 0.2, "batch_size": 4, **fields}
    return TrainConfig(cache_dir=str(tmp_path / "cache"), **fields).resolve()


def _assert_shares_interleave(whole, shares):
    """The shares of N processes are examples i::N of the whole, nothing else."""
    count = len(shares)
    for name in ("x_train", "y_train", "x_val", "y_val"):
        full = getattr(whole, name)
        for index, share in enumerate(shares):
            np.testing.assert_array_equal(getattr(share, name), full[index::count], err_msg=name)
        assert sum(len(getattr(s, name)) for s in shares) == len(full)


@pytest.mark.parametrize("count", [2, 3])
def test_folder_shares_are_the_split_interleaved_and_each_decodes_only_its_files(
        tmp_path, monkeypatch, count):
    folder = make_image_folder(tmp_path / "data", per_class=10)
    config = _config(tmp_path, data_dir=str(folder))
    decoded = []
    real = sources.decode_files

    def counting(files, labels, size):
        decoded.append(len(files))
        return real(files, labels, size)

    monkeypatch.setattr(sources, "decode_files", counting)
    whole = load(config)
    assert decoded == [24, 6]  # 30 files: 24 training, 6 held out
    decoded.clear()
    shares = [load(config, shard=(i, count)) for i in range(count)]
    # Each process decoded its own files only: together, each file once.
    assert sum(decoded) == 30 and max(decoded) <= -(-24 // count)
    _assert_shares_interleave(whole, shares)


def test_synthetic_shares_are_the_whole_set_interleaved(tmp_path):
    config = _config(tmp_path, data="synthetic", synthetic_examples=50)
    _assert_shares_interleave(load(config), [load(config, shard=(i, 2)) for i in range(2)])


def test_tfds_shares_decode_only_their_records(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr("training.data.sources._reachable", lambda url: True)
    config = _config(tmp_path, data="tfds", tfds_dir=str(tmp_path), image_size=32,
                     val_fraction=0.25, batch_size=8)
    with tfds.testing.mock_data(num_examples=40):
        whole = load(config)
        shares = [load(config, shard=(i, 2)) for i in range(2)]
    assert len(whole.x_train) + len(whole.x_val) == 40 and 6 <= len(whole.x_val) <= 14
    _assert_shares_interleave(whole, shares)
    # The records are read undecoded and only the share is decoded: the pixels
    # are those TFDS itself decodes.
    assert whole.x_train.dtype == np.uint8 and whole.x_train.shape[1:] == (32, 32, 3)


def test_a_share_may_be_empty_but_not_the_whole_split(tmp_path):
    config = _config(tmp_path, data="synthetic", synthetic_examples=10)  # 1 held-out image
    assert [len(load(config, shard=(i, 2)).x_val) for i in range(2)] == [1, 0]
