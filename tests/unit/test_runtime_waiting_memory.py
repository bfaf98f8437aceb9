"""How idle OpenMP threads wait (chosen from the load) and small-page buffers."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from probe.runtime.memory import small_page_array
from probe.runtime.threads import IDLE_SPIN_COUNT, set_openmp_waiting


def test_idle_machine_gets_a_short_spin() -> None:
    env: dict[str, str] = {}
    assert set_openmp_waiting(env, load=0.4, cores=2) == "spin"
    assert env == {"GOMP_SPINCOUNT": str(IDLE_SPIN_COUNT), "KMP_BLOCKTIME": "1"}


def test_busy_machine_sleeps() -> None:
    env: dict[str, str] = {}
    assert set_openmp_waiting(env, load=1.0, cores=2) == "passive"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("name", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"])
def test_a_policy_in_the_environment_is_kept(name: str) -> None:
    env = {name: "7"}
    assert set_openmp_waiting(env, load=0.0, cores=16) == "user"
    assert env == {name: "7"}


def test_small_page_array_is_a_writable_zeroed_buffer() -> None:
    a = small_page_array(1000, np.float16)
    assert a.shape == (1000,) and a.dtype == np.float16 and a.flags.writeable
    assert not a.any()
    a.reshape(10, 100)[3, 5] = 2.5
    assert a[305] == 2.5
    assert small_page_array(0, np.int64).shape == (0,)
    b = small_page_array((3, 4), np.int32)
    assert b.shape == (3, 4) and b.flags.c_contiguous and not b.any()
    assert small_page_array((0, 384), np.float16).shape == (0, 384)


def _vm_flags(address: int) -> list[str] | None:
    """The VmFlags of the mapping holding `address` (/proc/self/smaps), None if unlisted."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise flags are Linux's")
def test_small_page_array_asks_for_small_pages() -> None:
    a = small_page_array(16 << 20, np.uint8)  # numpy itself would advise huge pages here
    flags = _vm_flags(a.ctypes.data)
    assert flags is not None
    if "hg" not in flags and "nh" not in flags and not _thp_available():
        pytest.skip("kernel without transparent huge pages")
    assert "nh" in flags and "hg" not in flags


def _thp_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False
