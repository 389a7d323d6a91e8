"""A fixed mmap threshold gives freed model-sized buffers back to the OS (common/heap.py)."""

from __future__ import annotations

import ctypes.util
import platform
import subprocess
import sys

import pytest

from common.heap import fix_mmap_threshold

glibc = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="mallopt's mmap threshold is glibc's"
)

# Frees a 4 MiB block (which raises glibc's dynamic threshold to 4 MiB), then
# allocates 64 blocks of 2 MiB, each followed by a 100 kB block that stays
# alive (6 MiB in all), as activations are between long-lived objects; frees
# the big ones and prints how many MiB more than before the process holds.
RETAINED = """
import ctypes, ctypes.util, sys
from common.heap import fix_mmap_threshold

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold(128 * 1024)

def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")

big = 2 << 20
first = libc.malloc(2 * big)
ctypes.memset(first, 1, 2 * big)
libc.free(first)
before = rss_mib()
blocks, kept = [], []
for _ in range(64):
    block = libc.malloc(big)
    ctypes.memset(block, 1, big)
    blocks.append(block)
    kept.append(libc.malloc(100_000))
    ctypes.memset(kept[-1], 1, 100_000)
for block in blocks:
    libc.free(block)
print(rss_mib() - before)
"""


def retained_mib(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", RETAINED, mode], capture_output=True, text=True, check=True
    )
    return float(done.stdout)


@glibc
def test_freed_buffers_go_back_to_the_os_once_the_threshold_is_fixed() -> None:
    assert retained_mib("fixed") < 12


@glibc
def test_under_the_dynamic_threshold_the_same_buffers_stay_in_the_process() -> None:
    # What the setting is for: without it the 128 MiB freed is still resident.
    assert retained_mib("dynamic") > 100


def test_zero_keeps_the_c_librarys_default() -> None:
    assert fix_mmap_threshold(0) is False


@glibc
def test_the_threshold_is_set_through_mallopt() -> None:
    assert ctypes.util.find_library("c")
    assert fix_mmap_threshold(128 * 1024) is True
