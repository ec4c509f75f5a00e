"""Sparse relative-index encoding and canonical Huffman coding.

Relative indices (Deep Compression section 2): each surviving weight stores the
number of zeros since the previous one in a fixed ``index_bits`` field. A gap that
does not fit is bridged by an escape symbol ``2**index_bits - 1`` meaning "skip that
many zeros, no weight here" -- the role of the paper's filler zeros, without spending
a weight slot on them.

Huffman: canonical codes rebuilt from code lengths (one byte per symbol), the form
DEFLATE uses, so a codebook costs at most 2**bits bytes. Lengths are limited to 24 bits.
No maintained Python package serialises canonical code lengths this compactly
(dahuffman pickles its table), hence this small coder; it is tested by round trips.
"""

from __future__ import annotations

import heapq

import numpy as np

MAX_CODE_LEN = 24


# ----------------------------------------------------------------- relative indices

def encode_relative(mask_flat: np.ndarray, index_bits: int) -> np.ndarray:
    """Gap symbols for a boolean mask, with escapes; one non-escape symbol per True."""
    esc = (1 << index_bits) - 1
    pos = np.flatnonzero(mask_flat)
    gaps = np.diff(np.concatenate([[-1], pos])) - 1  # zeros before each kept weight
    out = []
    for g in gaps.tolist():
        while g >= esc:
            out.append(esc)
            g -= esc
        out.append(g)
    return np.asarray(out, dtype=np.int64)


def decode_relative(symbols: np.ndarray, index_bits: int, size: int) -> np.ndarray:
    """Boolean mask of length ``size`` from gap symbols."""
    esc = (1 << index_bits) - 1
    mask = np.zeros(size, dtype=bool)
    p = -1
    for s in np.asarray(symbols).tolist():
        if s == esc:
            p += esc
        else:
            p += s + 1
            mask[p] = True
    return mask


# ----------------------------------------------------------------------- Huffman

def code_lengths(freqs: np.ndarray) -> np.ndarray:
    """Huffman code length per symbol (0 for unused symbols), limited to MAX_CODE_LEN."""
    freqs = np.asarray(freqs, dtype=np.int64)
    used = np.flatnonzero(freqs)
    lengths = np.zeros(len(freqs), dtype=np.int64)
    if len(used) == 0:
        return lengths
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    f = freqs.copy()
    while True:
        heap = [(int(f[s]), i, [int(s)]) for i, s in enumerate(used)]
        heapq.heapify(heap)
        depth = {int(s): 0 for s in used}
        tie = len(heap)
        while len(heap) > 1:
            fa, _, a = heapq.heappop(heap)
            fb, _, b = heapq.heappop(heap)
            for s in a + b:
                depth[s] += 1
            heapq.heappush(heap, (fa + fb, tie, a + b))
            tie += 1
        for s, d in depth.items():
            lengths[s] = d
        if lengths.max() <= MAX_CODE_LEN:
            return lengths
        f[used] = (f[used] + 1) // 2 + 1  # flatten the distribution and retry


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values for given lengths (symbols ordered by (length, symbol))."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for s in sorted(np.flatnonzero(lengths).tolist(), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev
        codes[s] = code
        code += 1
        prev = int(lengths[s])
    return codes


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """Pack the canonical codes of ``symbols`` MSB-first into bytes."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size == 0:
        return b""
    codes = canonical_codes(lengths)
    ln, cv = lengths[symbols], codes[symbols]
    if (ln == 0).any():
        raise ValueError("symbol without a code")
    total = int(ln.sum())
    starts = np.concatenate([[0], np.cumsum(ln)[:-1]])
    bits = np.zeros(total, dtype=np.uint8)
    for j in range(int(ln.max())):
        sel = ln > j
        bits[starts[sel] + j] = (cv[sel] >> (ln[sel] - 1 - j)) & 1
    return np.packbits(bits).tobytes()


def huffman_decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols with a lookup table indexed by the next L bits."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    L = int(lengths.max())
    codes = canonical_codes(lengths)
    table_sym = np.zeros(1 << L, dtype=np.int64)
    table_len = np.zeros(1 << L, dtype=np.int64)
    for s in np.flatnonzero(lengths).tolist():
        l = int(lengths[s])
        lo = int(codes[s]) << (L - l)
        table_sym[lo:lo + (1 << (L - l))] = s
        table_len[lo:lo + (1 << (L - l))] = l
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.int64)
    bits = np.concatenate([bits, np.zeros(L, dtype=np.int64)])
    n = len(bits) - L
    window = np.zeros(n, dtype=np.int64)  # value of the L bits starting at each position
    for j in range(L):
        window = (window << 1) | bits[j:j + n]
    sym_at, len_at = table_sym[window].tolist(), table_len[window].tolist()
    out = [0] * count
    p = 0
    for i in range(count):
        out[i] = sym_at[p]
        p += len_at[p]
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------- packed low-bit integers

def pack_signed(q: np.ndarray, bits: int) -> bytes:
    """Signed integers in [-2^(bits-1), 2^(bits-1)-1], ``bits`` each (two's complement),
    packed little-endian, first value in the lowest bits: ONNX's INT4/INT2 layout."""
    u = (q.astype(np.int64).ravel() & ((1 << bits) - 1)).astype(np.uint8)
    per = 8 // bits
    u = np.concatenate([u, np.zeros((-len(u)) % per, np.uint8)]).reshape(-1, per)
    return (u << (np.arange(per, dtype=np.uint8) * bits)).sum(axis=1, dtype=np.uint16).astype(np.uint8).tobytes() \
        if bits < 8 else u.astype(np.uint8).tobytes()


def unpack_signed(data: bytes, bits: int, count: int) -> np.ndarray:
    """The inverse of :func:`pack_signed`: ``count`` int8 values."""
    b = np.frombuffer(data, np.uint8)
    per = 8 // bits
    if bits == 8:
        u = b[:count].astype(np.int64)
    else:
        u = ((b[:, None] >> (np.arange(per, dtype=np.uint8) * bits)) & ((1 << bits) - 1)).reshape(-1)[:count]
        u = u.astype(np.int64)
    return np.where(u >= 1 << (bits - 1), u - (1 << bits), u).astype(np.int8)
