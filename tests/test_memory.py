"""steerlab.memory.keep_freed_memory: a loop that frees and reallocates tens of megabytes stops
faulting in fresh pages (measured in a subprocess: the setting is process-wide and the first call
decides)."""

from __future__ import annotations

import platform
import subprocess
import sys

LOOP = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from steerlab.memory import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
def once():
    xs = [np.ones(3_000_000) for _ in range(3)]  # 3 x 24 MB: below glibc's largest mmap threshold
    return sum(float(x[-1]) for x in xs)
once()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    once()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _clean_env() -> dict:
    """This environment without the allocator settings a user may have chosen (they would win)."""
    import os

    from steerlab.memory import _user_chose

    return {k: v for k, v in os.environ.items() if not _user_chose({k: v})}


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True, env=_clean_env()
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_instead_of_faulted_in_again():
    if platform.libc_ver()[0] != "glibc":  # no mallopt: the call says it does nothing
        from steerlab.memory import keep_freed_memory

        assert keep_freed_memory() is False
        return
    plain, kept = _faults("plain"), _faults("keep")
    # 20 rounds of 72 MB freed at the heap's top: glibc trims and refaults about 18k pages a round
    # by default (measured 29,598 over the loop); kept, the pages stay mapped (measured 0)
    assert plain > 10_000
    assert kept < plain / 20


def test_the_steerlab_command_keeps_freed_memory():
    code = "import sys; from steerlab import memory, cli; sys.argv = ['steerlab', '--version']\ntry:\n    cli.main()\nexcept SystemExit:\n    pass\nprint(memory._applied)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_clean_env())
    assert out.stdout.strip().splitlines()[-1] == ("[True]" if platform.libc_ver()[0] == "glibc" else "[False]")


def test_the_users_own_allocator_choice_wins():
    from steerlab.memory import _user_chose

    assert not _user_chose({})
    assert not _user_chose({"STEERLAB_KEEP_FREED_MEMORY": "1", "GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
    for env in (
        {"STEERLAB_KEEP_FREED_MEMORY": "0"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    ):
        assert _user_chose(env), env


def test_opting_out_keeps_the_default_allocator():
    """With STEERLAB_KEEP_FREED_MEMORY=0 the call changes nothing: the loop faults as without it."""
    if platform.libc_ver()[0] != "glibc":
        return

    env = {**_clean_env(), "STEERLAB_KEEP_FREED_MEMORY": "0"}
    code = LOOP.replace("assert keep_freed_memory() and keep_freed_memory()", "assert not keep_freed_memory()")
    out = subprocess.run([sys.executable, "-c", code, "keep"], capture_output=True, text=True, check=True, env=env)
    assert int(out.stdout.strip().splitlines()[-1]) > 10_000
