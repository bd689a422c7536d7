"""Pin glibc's mmap threshold, so the consumer's large short-lived buffers never pin the heap.

glibc serves an allocation of at least `M_MMAP_THRESHOLD` bytes (128 KiB at start) with a
mapping of its own, unmapped when freed. The threshold is dynamic by default: freeing such a
block raises it to that block's size (up to 32 MiB), and from then on blocks that large come
from the heap instead, where they stay between long-lived objects. Every checkpoint builds a
state of tens of MB (26.7 MB of `state.json` with 20,000 pending impressions), so after the
first one those buffers land in the heap: the heap grows to hold them, cannot shrink past the
objects allocated after them, and each checkpoint touches pages of its free space, so resident
memory creeps up (+8 to +11 MB per 100,000 messages measured, the Python objects flat).
Setting the threshold explicitly also turns the dynamic raising off (`mallopt(3)`).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (<malloc.h>)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes (no dynamic raising from then on);
    False where the C library has no `mallopt` or refuses the value (not glibc: nothing
    changes)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold) == 1)
