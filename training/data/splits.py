"""Seeded, reproducible selections of examples: the stratified held-out split,
`--limit` and a process's share of a multi-process run.

All are pure functions of their arguments, so a run's saved configuration
always rebuilds the same split (and the same shares).
"""

import numpy as np


def stratified_split(items, labels, fraction, seed):
    """Holds out `fraction` of every class (seeded).

    Args:
        items: Array of examples (images or file paths), indexed like `labels`.
        labels: int labels.
        fraction: Held-out fraction of each class; with `fraction > 0` every
            class of two or more examples keeps at least one on each side.
        seed: Seed of the per-class permutations.

    Returns:
        `(train items, train labels, held-out items, held-out labels)`, each in
        the original order.
    """
    rng = np.random.default_rng(seed)
    val, train = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(idx) * fraction))
        if fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)  # keep both sides non-empty
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    val, train = np.sort(np.concatenate(val)), np.sort(np.concatenate(train))
    return items[train], labels[train], items[val], labels[val]


def limit(x, y, count, seed):
    """The first `count` examples of a seeded shuffle (folders are sorted by class).

    Args:
        x: Examples.
        y: Labels, indexed like `x`.
        count: How many to keep; `None` keeps all.
        seed: Seed of the shuffle.

    Returns:
        `(x, y)`, the kept examples in their original order.
    """
    if count is None or count >= len(x):
        return x, y
    idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(x))[:count])
    return x[idx], y[idx]


def take_share(x, y, shard):
    """Examples `index::count` of `(x, y)`: one process's share of a run over
    `count` processes (`shard = (index, count)`); every example lands in
    exactly one share, and the shares differ in size by at most one.

    Taken before decoding (file lists, encoded bytes), so that each process
    decodes only its own share of the data.
    """
    index, count = shard
    if count == 1:
        return x, y
    return x[index::count], y[index::count]
