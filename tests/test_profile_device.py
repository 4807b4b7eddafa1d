import random

import numpy as np
import pytest
import torch

from course_utils.device import make_generator, pick_device, seed_everything
from course_utils.profile import PROFILES, by_profile, get_profile


def test_profile_from_argument_and_environment(monkeypatch):
    assert get_profile("smoke") == "smoke"
    assert get_profile(" CPU ") == "cpu"
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    assert get_profile() == "gpu"
    monkeypatch.delenv("COURSE_PROFILE")
    assert get_profile() == ("gpu" if torch.cuda.is_available() else "cpu")
    assert get_profile("auto") == get_profile("")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_profile("auto") == get_profile() == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile("auto") == get_profile() == "cpu"


def test_unknown_profile_names_the_allowed_ones(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        get_profile()
    with pytest.raises(TypeError):
        get_profile(3)


def test_by_profile_requires_every_profile():
    assert by_profile({"smoke": 1, "cpu": 2, "gpu": 3}, "cpu") == 2
    with pytest.raises(ValueError, match="missing"):
        by_profile({"smoke": 1, "cpu": 2}, "cpu")
    with pytest.raises(ValueError, match="unknown"):
        by_profile({p: 0 for p in PROFILES} | {"tpu": 1}, "cpu")


def test_pick_device_and_errors():
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_seeding_is_reproducible_and_validated():
    a = torch.randn(3, generator=seed_everything(5))
    b = torch.randn(3, generator=seed_everything(5))
    assert torch.equal(a, b)
    seed_everything(7)  # the global generators too (weight init, code we do not control)
    first = torch.rand(2), np.random.rand(), random.random()
    seed_everything(7)
    assert torch.equal(torch.rand(2), first[0]) and np.random.rand() == first[1] and random.random() == first[2]
    assert not torch.equal(torch.randn(3, generator=make_generator(1, "cpu")),
                           torch.randn(3, generator=make_generator(2, "cpu")))
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError):
            seed_everything(bad)


def test_torch_threads_restores_the_setting_even_after_an_error():
    from course_utils.device import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_device_names_are_checked_and_native_bf16_is_a_bool():
    from course_utils.device import check_device_name, cpu_description, native_bf16

    for good in ("cpu", "cuda", "cuda:1", "mps"):
        check_device_name(good)
    for bad in ("gpu", "", None, torch.device("cpu")):
        with pytest.raises(ValueError, match="naming one of"):
            check_device_name(bad)
    assert isinstance(native_bf16("cpu"), bool) and native_bf16("mps") is False
    assert "logical cores" in cpu_description()


def test_cpu_description_names_apple_silicon_and_arm_linux(monkeypatch):
    import io
    import types

    import course_utils.device as device

    def no_cpuinfo(path, *args, **kwargs):
        raise OSError("no /proc on macOS")

    monkeypatch.setattr(device, "open", no_cpuinfo, raising=False)
    monkeypatch.setattr(device.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(device.platform, "processor", lambda: "arm")
    monkeypatch.setattr(device.subprocess, "run", lambda *a, **k: types.SimpleNamespace(stdout="Apple M2\n"))
    assert device.cpu_description().startswith("Apple M2, ")

    def sysctl_missing(*args, **kwargs):
        raise FileNotFoundError("sysctl")

    monkeypatch.setattr(device.subprocess, "run", sysctl_missing)
    assert device.cpu_description().startswith("arm, ")  # the fallback still says something

    arm_linux = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\nFeatures\t: fp asimd\n"
    monkeypatch.setattr(device, "open", lambda path, *a, **k: io.StringIO(arm_linux), raising=False)
    monkeypatch.setattr(device.platform, "machine", lambda: "aarch64")
    assert device.cpu_description().startswith("aarch64 CPU (implementer 0x41, part 0xd0c), ")


def test_free_accelerator_bytes_asks_the_right_backend(monkeypatch):
    from course_utils.device import free_accelerator_bytes

    assert free_accelerator_bytes("cpu") is None and free_accelerator_bytes(torch.device("cpu")) is None
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: asked.append(d) or (3 * 2**30, 16 * 2**30))
    assert free_accelerator_bytes("cuda:1") == 3 * 2**30 and asked == [torch.device("cuda:1")]  # free, not total
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 10 * 2**30)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 4 * 2**30)
    assert free_accelerator_bytes("mps") == 6 * 2**30


def test_numpy_seeds_are_accepted_and_bad_devices_named():
    a, b = make_generator(np.int64(3), "cpu"), make_generator(3, "cpu")  # refused before: 'got np.int64(3)'
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    seeded = seed_everything(np.int64(5))
    assert torch.equal(torch.rand(2, generator=seeded), torch.rand(2, generator=make_generator(5, "cpu")))
    for bad in ("gpu", None, "meta"):  # torch's 'Expected one of cpu, cuda, ipu, xpu, ...' or a silent CPU generator
        with pytest.raises(ValueError, match="device must be a string naming one of"):
            make_generator(0, bad)
    assert make_generator(0, torch.device("cpu")).device.type == "cpu"


def test_describe_runtime_takes_a_device_name_and_torch_threads_a_count():
    from course_utils.device import cpu_description, describe_runtime, torch_threads

    assert "device cpu" in describe_runtime("cpu")  # AttributeError: 'str' object has no attribute 'type', before
    assert f"device cpu ({cpu_description()}) |" in describe_runtime("cpu")  # the machine behind every timing, named
    with pytest.raises(ValueError, match="device must be a string naming one of"):
        describe_runtime("gpu")
    for bad in (0, -1, 2.5, True, None):  # RuntimeError from torch.set_num_threads before
        with pytest.raises(ValueError, match=r"n \(torch threads\) must be an int >= 1"):
            with torch_threads(bad):
                pass
    with torch_threads(np.int64(1)):
        assert torch.get_num_threads() == 1


def test_describe_runtime_names_a_gpu_by_its_hardware(monkeypatch):
    from course_utils import device as device_module

    monkeypatch.setattr(device_module.torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert "device cuda (NVIDIA H100 80GB HBM3) |" in device_module.describe_runtime(torch.device("cuda"))
    monkeypatch.setattr(device_module, "cpu_description", lambda: "Apple M2, 8 logical cores")
    mps_line = device_module.describe_runtime(torch.device("mps"))
    assert "device mps (Metal GPU on a Mac with Apple M2, 8 logical cores) |" in mps_line


def test_device_name_names_the_hardware(monkeypatch):
    from course_utils import device as device_module

    assert device_module.device_name(torch.device("cpu")) == device_module.cpu_description()
    mac = device_module.cpu_description()
    assert device_module.device_name(torch.device("mps")) == f"Metal GPU on a Mac with {mac}"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")
    assert device_module.device_name(torch.device("cuda", 0)) == "NVIDIA H100 80GB HBM3"
