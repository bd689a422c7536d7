"""glibc's mmap threshold, pinned by `nudge consume`: a large buffer freed must not pull the next
one of its size into the heap (where the consumer's checkpoint buffers made RSS creep).

Each case runs in a fresh interpreter (the threshold is process-wide) and measures the heap
glibc holds (`mallinfo2().arena`), not resident memory: the mechanism, free of page noise.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUFFER_MB = 24  # about a checkpoint's state.json with 20,000 pending impressions

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")

_HEAP_GROWTH = f"""
import ctypes, sys
from streams.allocator import pin_mmap_threshold

if sys.argv[1] == "pin" and not pin_mmap_threshold():
    sys.exit("mallopt refused")
libc = ctypes.CDLL("libc.so.6")
fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
          "uordblks", "fordblks", "keepcost")
Info = type("Info", (ctypes.Structure,), {{"_fields_": [(f, ctypes.c_size_t) for f in fields]}})
libc.mallinfo2.restype = Info
first = bytearray({BUFFER_MB} << 20)
del first  # mapped, then unmapped: unpinned, glibc raises its threshold to this size
heap = libc.mallinfo2().arena
second = bytearray({BUFFER_MB} << 20)
print((libc.mallinfo2().arena - heap) / 2**20)
"""


def heap_growth_mb(mode: str) -> float:
    """MB the heap grew by to hold a second large buffer after a first was freed."""
    done = subprocess.run(
        [sys.executable, "-c", _HEAP_GROWTH, mode],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return float(done.stdout)


def test_unpinned_a_freed_large_buffer_pulls_the_next_one_into_the_heap() -> None:
    # glibc's default, and the reason for the pin: the heap grows by the whole buffer.
    assert heap_growth_mb("default") >= BUFFER_MB


def test_pinned_the_next_large_buffer_is_mapped_and_the_heap_does_not_grow() -> None:
    assert heap_growth_mb("pin") < 1.0
