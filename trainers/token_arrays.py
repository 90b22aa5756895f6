"""Read-only 1-D token arrays that are views, not copies: a corpus's shards and its block subsets.

Training reads tokens only through `take(indices)` (numpy's flat gather, which `np.ndarray`
and `np.memmap` already have), `size`/`len()` and slices, so a trial on a 1 GB corpus copies
only the windows of each batch and its validation tokens (docs/architecture.md §5). Both
classes here provide exactly that; `np.asarray(view)` materialises one (tests, small slices).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class TokenView:
    """What both views share: ``size``, ``dtype``, ``take`` and slices (subclasses), and the
    numpy conversions built on them."""
    size: int
    dtype: np.dtype

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice) -> np.ndarray:
        """A slice, copied out (contiguous reads when the step is 1)."""
        if not isinstance(key, slice):
            raise TypeError(f"{type(self).__name__} supports slices and take(), not item access")
        start, stop, step = key.indices(self.size)
        return self._slice(start, stop) if step == 1 else self.take(np.arange(start, stop, step))

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)

    def astype(self, dtype) -> np.ndarray:
        return self[:].astype(dtype)

    def tolist(self) -> list:
        return self[:].tolist()


class ShardedTokens(TokenView):
    """The concatenation of 1-D token arrays (one memory-mapped file per shard), never copied."""

    def __init__(self, shards: Sequence[np.ndarray]):
        if not shards:
            raise ValueError("ShardedTokens needs at least one shard")
        self.shards = list(shards)
        self.dtype = np.result_type(*[s.dtype for s in self.shards])
        self.offsets = np.cumsum([0] + [s.size for s in self.shards])  # offsets[i]: shard i's start
        self.size = int(self.offsets[-1])

    def take(self, indices) -> np.ndarray:
        """Tokens at flat ``indices`` (any shape, 0 <= index < size), in ``dtype``."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty(indices.shape, dtype=self.dtype)
        shard = np.searchsorted(self.offsets, indices, side="right") - 1
        for k in np.unique(shard):
            at = shard == k
            out[at] = self.shards[k][indices[at] - self.offsets[k]]
        return out

    def _slice(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        for k, shard in enumerate(self.shards):
            lo, hi = max(start - self.offsets[k], 0), min(stop - self.offsets[k], shard.size)
            if lo < hi:
                pieces.append(shard[lo:hi])
        return np.concatenate(pieces) if pieces else np.empty(0, self.dtype)



class BlockView(TokenView):
    """The first ``size`` tokens of ``blocks`` (indices of ``block_tokens``-token blocks of
    ``base``) laid end to end: a D-token training subset or a validation stream, as a view."""

    def __init__(self, base, blocks: np.ndarray, block_tokens: int, size: int):
        needed = -(-size // block_tokens)
        if needed > len(blocks):
            raise ValueError(f"{size} tokens need {needed} blocks of {block_tokens}; {len(blocks)} given")
        self.base, self.block_tokens, self.size = base, block_tokens, int(size)
        self.blocks = np.asarray(blocks[:needed], dtype=np.int64)
        self.dtype = base.dtype

    def take(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            raise IndexError(f"index out of range for a view of {self.size} tokens")
        block, offset = np.divmod(indices, self.block_tokens)
        return self.base.take(self.blocks[block] * self.block_tokens + offset)

    def _slice(self, start: int, stop: int) -> np.ndarray:
        pieces, bt = [], self.block_tokens  # whole-block slices: 0.4 s -> ms for 1M tokens of 18 shards
        for k in range(start // bt, -(-stop // bt)):
            lo, hi = max(start, k * bt), min(stop, (k + 1) * bt)
            base = int(self.blocks[k]) * bt - k * bt
            pieces.append(self.base[base + lo: base + hi])
        return np.concatenate(pieces) if pieces else np.empty(0, self.dtype)

