"""The C allocator's settings for a process that runs many forward passes.

glibc's ``malloc`` serves a request above its mmap threshold (dynamic, 128 KiB at first) with a
fresh ``mmap`` and gives it back with ``munmap`` when freed, and hands the top of its heap back to
the system once more than its trim threshold lies free there. A batched forward pass allocates and
frees tens of megabytes of activations, so each pass of a sweep maps fresh pages that the kernel
must zero on first touch: measured on the battery's sweep of the embedded model (672 items, 44
passes; docs/steerability.md "Performance") about a million minor page faults per sweep, a fifth
to a third of its CPU time, and more of them on the traced, patched passes than on a bare forward
of the same batches. Keeping freed memory in the process (glibc's ``mallopt``; the same settings
as its ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` environment variables) removes
them: the next pass reuses the pages the previous one touched. The cost is that the process keeps
its peak heap until it exits, which a sweep reaches on its first pass anyway.

PyTorch's CPU performance guide recommends the same end by another allocator (jemalloc or
TCMalloc through ``LD_PRELOAD``); ``mallopt`` needs no library and applies from inside the
process. Only glibc has it: elsewhere (macOS, musl) :func:`keep_freed_memory` does nothing and
says so. The user's own choice wins: with glibc's malloc variables or tunables in the
environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``,
``GLIBC_TUNABLES`` naming ``glibc.malloc``), another allocator preloaded (``LD_PRELOAD``), or
``STEERLAB_KEEP_FREED_MEMORY=0``, nothing is changed. Each process holds its peak heap until it
exits (a Ray worker too: with N workers, N peaks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit): larger requests still map
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024  # keep up to 1 GiB free at the heap's top before giving it back

OPT_OUT = "STEERLAB_KEEP_FREED_MEMORY"  # "0": leave the allocator as it is
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_applied: list[bool] = []


def _user_chose(environ: dict[str, str]) -> bool:
    """Whether the environment already decides the allocator's behaviour (see the module doc)."""
    return (
        environ.get(OPT_OUT, "1").strip() == "0"
        or any(k in environ for k in _USER_SETTINGS)
        or "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")
        or bool(environ.get("LD_PRELOAD", "").strip())
    )


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory in this process (mmap threshold 32 MiB, trim
    threshold 1 GiB) so that repeated forward passes reuse their pages instead of faulting in
    fresh ones. Idempotent; the first call decides. Returns whether the settings apply (False
    where the C library is not glibc, or where the environment already decides: the module
    doc). Process-wide: the ``steerlab`` command and steerlab's Ray workers call it; a Python
    caller running long sweeps may call it too."""
    if _applied:
        return _applied[0]
    ok = False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and not _user_chose(dict(os.environ)):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            mallopt = libc.mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
                mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
            )
        except (OSError, AttributeError):
            ok = False
    _applied.append(ok)
    return ok
