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


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True)
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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == ("[True]" if platform.libc_ver()[0] == "glibc" else "[False]")
