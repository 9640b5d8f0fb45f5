"""common.env: the ISA question every notebook asks of the CPU."""
import pytest

from common import env


def test_has_isa_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(env, "cpu_info", lambda: {"cpu": "fake", "cores": 2, "isa": "avx2 fma avx512_vnni"})
    assert env.has_isa("avx512_vnni", "avx_vnni")
    assert not env.has_isa("avx512_bf16", "amx_bf16")


@pytest.mark.parametrize("flags", [(), ("avx512-vnni",)])
def test_has_isa_names_the_valid_flags(flags):
    with pytest.raises(ValueError, match="choose from avx2"):
        env.has_isa(*flags)
