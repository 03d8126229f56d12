"""Pure storage logic: device numbers (device_number.ml) and the backends' size arithmetic
(sm vhdutil/lvhdutil), as hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xapi_sim import install_storage as s
from xapi_sim.classes import storage_vbd as d
from xapi_sim.errors import Failure


@given(st.integers(min_value=0, max_value=10_000), st.booleans())
def test_disk_numbers_round_trip_through_linux_names(n, hvm):
    dev = d.of_disk_number(hvm, n)
    name = d.to_linux_device(dev)
    assert name.startswith("xvd")
    back = d.of_string(False, name)
    assert back[1] == n
    assert dev in d.possible_devices(str(n))


def test_known_names():
    assert d.to_linux_device(d.of_disk_number(False, 0)) == "xvda"
    assert d.to_linux_device(d.of_disk_number(False, 26)) == "xvdaa"
    assert d.of_string(True, "hdb") == ("ide", 1, 0)
    assert d.of_string(True, "1") == ("ide", 1, 0)
    assert d.of_string(False, "1") == ("xen", 1, 0)
    assert d.of_string(True, "bogus") is None
    assert d.valid_device("autodetect") and d.valid_device("xvdb") and d.valid_device("-3")
    assert not d.valid_device("xvdz") and not d.valid_device("cdrom")


@given(st.integers(min_value=0, max_value=2 * 1024**4))
def test_thick_vdi_sizes(size):
    try:
        virt, util = s.new_vdi_size("lvm", size)
    except Failure as e:
        assert e.code == "SR_BACKEND_FAILURE_79" and size // s.MiB > s.LVHD_MAX_VDI_SIZE_MB
        return
    assert (
        virt >= size
        and virt % s.VHD_BLOCK_SIZE == 0
        and virt - size < s.VHD_BLOCK_SIZE
        or virt == s.VHD_BLOCK_SIZE
    )
    assert util % s.LVM_SIZE_INCREMENT == 0 and util >= virt


@given(st.integers(min_value=1, max_value=2 * 1024**4))
def test_thin_vdi_sizes(size):
    try:
        virt, util = s.new_vdi_size("ext", size)
    except Failure as e:
        assert e.code == "SR_BACKEND_FAILURE_79"
        return
    assert virt >= size and virt % s.MiB == 0
    assert util == s.vhd_overhead_empty(virt) and util < virt


@given(st.integers(min_value=s.MiB, max_value=1024**4), st.integers(min_value=0, max_value=1024**4))
def test_resize_never_shrinks(old, new):
    for t in ("lvm", "nfs"):
        if new < old:
            with pytest.raises(Failure) as e:
                s.resized_vdi(t, old, new)
            assert e.value.params[1].endswith("[opterr=shrinking not allowed]")
        else:
            virt, _ = s.resized_vdi(t, old, new)
            assert virt >= new


def test_sm_failure_shape():
    f = s.sm_failure("ConfigServerMissing")
    assert f.description == [
        "SR_BACKEND_FAILURE_102",
        "",
        "The request is missing the server parameter",
        "",
    ]
