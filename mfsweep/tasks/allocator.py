"""Keep freed memory in the process: the packed step allocates and frees dozens of multi-megabyte activations a
step, and with glibc's defaults much of that memory goes back to the system when freed (unmapped, or trimmed off
the heap) and its pages fault in again on first touch (a bias copy into a new 4 MB output took 1.7 ms where it
takes 0.2 ms in reused memory). With this setting the packed step of benchmarks/allocator.py faults in ~100
pages a step instead of 2,000-6,000 and runs about 1.1x faster on one thread (benchmarks/BENCHMARKS.md)."""
from __future__ import annotations

import ctypes
import sys

# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks below this come from the heap and are reused after free; the heap's free top is returned to the system
# only beyond the trim threshold. Both bound what a process keeps, not what it uses.
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve allocations up to 256 MB from the heap and keep up to 1 GB of freed memory;
    True if it took effect (False off Linux/glibc, where nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except AttributeError:  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
