"""bf16 only where the CPU has it natively: detection from cpuinfo flags, the override, the defaults using it."""

import pytest

from igpo_env import _hardware
from igpo_env._hardware import CPU_BF16_ENV, cpu_has_native_bf16, effective_dtype

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Point the detection at a cpuinfo file the test writes (and clear the override)."""
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)

    count = iter(range(100))

    def use(text):
        path = tmp_path / f"cpuinfo{next(count)}"  # a new path each time: the flags are cached per path
        path.write_text(text)
        monkeypatch.setattr(_hardware, "CPUINFO", str(path))

    return use


def test_flags_decide(cpuinfo):
    cpuinfo(AVX2_ONLY)
    assert not cpu_has_native_bf16()
    assert effective_dtype("bfloat16") == "float32"
    assert effective_dtype("bfloat16", "cpu") == "float32"
    assert effective_dtype("float16") == "float16"  # only bf16 is rewritten
    cpuinfo(SAPPHIRE)
    assert cpu_has_native_bf16()
    assert effective_dtype("bfloat16") == "bfloat16"


def test_cuda_is_never_downgraded(cpuinfo):
    cpuinfo(AVX2_ONLY)
    assert effective_dtype("bfloat16", "cuda") == "bfloat16"
    assert effective_dtype("bfloat16", "cuda:1") == "bfloat16"


def test_missing_or_flagless_cpuinfo_means_no_bf16(tmp_path, monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    assert not cpu_has_native_bf16(str(tmp_path / "absent"))
    (tmp_path / "empty").write_text("processor : 0\n")
    assert not cpu_has_native_bf16(str(tmp_path / "empty"))


def test_override(cpuinfo, monkeypatch):
    cpuinfo(AVX2_ONLY)
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert cpu_has_native_bf16() and effective_dtype("bfloat16") == "bfloat16"
    cpuinfo(SAPPHIRE)
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert not cpu_has_native_bf16() and effective_dtype("bfloat16") == "float32"
    monkeypatch.setenv(CPU_BF16_ENV, "yes")
    with pytest.raises(ValueError, match="IGPO_ENV_CPU_BF16 must be '0' or '1', got 'yes'"):
        cpu_has_native_bf16()


def test_warm_start_sft_autocasts_only_with_native_bf16(tmp_path, monkeypatch):
    from agents.bootstrap.sft import sft_config
    from agents.bootstrap.warm_start import WARM_START

    assert WARM_START.bf16
    kwargs = dict(max_steps=1, packing=False, seed=0, device="cpu", verbose=False, logging_steps=1)
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert sft_config(tmp_path, WARM_START, **kwargs).bf16 is False
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert sft_config(tmp_path, WARM_START, **kwargs).bf16 is True
