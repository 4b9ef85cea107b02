"""Keep freed memory in the process on the CPU.

glibc serves large blocks (>= 128 KiB by default, growing to at most 32 MiB) with mmap and
gives them back to the system on free; a training step on the CPU allocates and frees
activations larger than that every step, so each step pays again for the kernel to map and
zero those pages (system time). `keep_freed_memory` makes glibc serve every block from its
heap and stops the heap being trimmed, so that freed blocks are reused; it changes no result. Where the C
library is not glibc it does nothing. Its effect: bench/RESULTS.md, "Demo end to end on CPU".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4  # how many blocks may be mmapped at once: 0 = none
TRIM_THRESHOLD = 2**31 - 1  # the largest mallopt takes: freed memory stays with the process


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed large blocks instead of unmapping them; True if it took it."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt in %s: allocator left as it is", name)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    taken = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("mallopt: no mmapped blocks, trim threshold %d: %s", TRIM_THRESHOLD, "set" if taken else "refused")
    return taken
