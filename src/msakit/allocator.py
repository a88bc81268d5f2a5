"""Process-level allocator setting: keep freed memory in the process instead of handing it back.

glibc's malloc serves every block above `M_MMAP_THRESHOLD` (128 KiB at start, raised dynamically up
to 32 MiB) with its own `mmap`, and returns the top of the heap to the OS once more than
`M_TRIM_THRESHOLD` is free. A training step allocates and frees the same activation and gradient
tensors every batch, so each batch pays fresh page faults for memory it just gave back: on a
size-matched LF-DNN epoch on MOSI that was 12k-39k minor page faults and up to 0.1 s of system time
(docs/benchmarks.md). `malloc="keep"` raises both thresholds through `mallopt` so the freed blocks
stay in the heap and are reused; it is the same as starting Python with
`MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=2147483647`.

The setting is process-wide and cannot be undone for the blocks already in the heap: "default"
leaves the allocator as it is (it does not revert an earlier "keep"). Where the C library is not
glibc (musl, macOS, Windows) "keep" changes nothing and says so in one line on stderr.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

from msakit.errors import ConfigError

ALLOCATORS = ("default", "keep")
# mallopt parameter numbers (glibc <malloc.h>)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# mallopt takes an int: the largest trim threshold it can be given; glibc >= 2.26 accepts an mmap
# threshold above its dynamic 32 MiB ceiling
KEEP_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap
KEEP_TRIM_THRESHOLD = (1 << 31) - 1  # return free heap top to the OS only beyond ~2 GiB
KEEP = ((M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD), (M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD))

_applied: set[str] = set()  # "keep" once it was applied (or found unsupported) in this process


def glibc() -> Any | None:
    """This process's C library when it is glibc (it has `gnu_get_libc_version` and `mallopt`), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.gnu_get_libc_version  # noqa: B018  # AttributeError on musl, macOS, Windows
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return libc


def apply_allocator(mode: str, *, libc: Any | None = None) -> bool:
    """Apply `mode` ("default" | "keep") to this process; True when glibc's thresholds were set now.

    `libc` lets tests hand in a stand-in C library (default: `glibc()`). Idempotent: a second "keep" in the
    same process does nothing.
    """
    if mode not in ALLOCATORS:
        raise ConfigError(f"trainer: malloc must be one of {', '.join(ALLOCATORS)}, got {mode!r}")
    if mode == "default" or "keep" in _applied:
        return False
    _applied.add("keep")
    lib = libc if libc is not None else glibc()
    if lib is None:
        print(
            "msakit: malloc=keep needs glibc's mallopt; this C library has none, allocator left as is", file=sys.stderr
        )
        return False
    refused = [param for param, value in KEEP if lib.mallopt(param, value) != 1]
    if refused:  # an older glibc capping the mmap threshold: say so, keep whatever was accepted
        print(
            f"msakit: malloc=keep: glibc refused mallopt parameter(s) {refused}; allocator partly unchanged",
            file=sys.stderr,
        )
    return not refused


def reset_for_tests() -> None:
    """Forget that "keep" was applied (the thresholds themselves stay): tests only."""
    _applied.clear()
