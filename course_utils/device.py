"""Device selection, explicit seeding, and the rule that a random draw's generator lives on the tensor's device.

The device rule (one place, used by every notebook): the ``cpu`` and ``smoke`` profiles always run on the CPU, even
on a machine with a GPU or Apple MPS, so their numbers are comparable everywhere; the ``gpu`` profile takes the best
accelerator present (CUDA, then MPS) and falls back to the CPU. Nothing in the course hard-codes ``"cuda"``.

Seeding returns a ``torch.Generator`` that callers pass on explicitly, instead of relying on hidden global state;
:func:`seed_everything` additionally seeds the global generators for code we do not control (weight init).
A generator can only draw numbers on its own device: ``torch.multinomial(cuda_probs, 1, generator=cpu_generator)``
raises on CUDA, and a CPU-only run never sees it. So every public function that draws with a generator calls
:func:`check_generator` first, and :func:`make_generator` takes the device explicitly.

Timing: CUDA and MPS run kernels asynchronously, so a wall-clock timer must wait for them first
(:func:`synchronize`); :func:`timed` times one call that way, for the notebooks' and benchmarks' timings.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import time
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch

from course_utils.arguments import check_int
from course_utils.profile import get_profile

DEVICE_KINDS = ("cuda", "mps", "cpu")


def pick_device(preferred: str | None = None, profile: str | None = None) -> torch.device:
    """The device to run on: ``preferred`` if given (and available), else the profile's rule.

    ``profile`` defaults to the active one (:func:`course_utils.profile.get_profile`): ``smoke`` and ``cpu`` give the
    CPU; ``gpu`` gives CUDA if available, else MPS if available, else the CPU with a ``RuntimeWarning`` (the gpu
    profile's sizes are hours of work there).
    """
    if preferred is not None:
        kind = str(preferred).split(":")[0]
        if kind not in DEVICE_KINDS:
            raise ValueError(f"unknown device {preferred!r}; allowed: {', '.join(DEVICE_KINDS)} (optionally 'cuda:N')")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} requested but CUDA is not available; use pick_device() for auto")
        if kind == "mps" and not _mps_available():
            raise ValueError(f"device {preferred!r} requested but MPS is not available; use pick_device() for auto")
        return torch.device(preferred)
    if get_profile(profile) != "gpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    warnings.warn("the gpu profile found no CUDA or MPS device and runs on the CPU: its GPU-sized experiments take "
                  "hours there; set COURSE_PROFILE=cpu (or smoke) for the CPU scale", RuntimeWarning, stacklevel=2)
    return torch.device("cpu")


def check_device_name(device: object, what: str = "device") -> None:
    """Raise a clear error unless ``device`` is a string naming cpu, cuda (optionally ``cuda:N``) or mps."""
    if not isinstance(device, str) or device.split(":")[0] not in DEVICE_KINDS:
        raise ValueError(f"{what} must be a string naming one of {DEVICE_KINDS} (optionally 'cuda:N'), got {device!r}")


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """True where ``device`` multiplies bfloat16 natively: a CUDA GPU with bf16 tensor cores (not emulation), or a
    CPU with AVX512-BF16 or AMX. Elsewhere bf16 autocast is emulated and slower than float32."""
    kind = str(device).split(":")[0]
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch.cpu helpers; absent -> False
    return kind == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the previous setting."""
    n = check_int(n, "n (torch threads)", minimum=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cpu_description() -> str:
    """The CPU as read now (machines differ between runs): model name, family/model numbers and the flags that
    decide matmul speed, for benchmark reports. Linux reads ``/proc/cpuinfo`` (on ARM, which has no model name
    there, the implementer and part numbers); macOS asks ``sysctl`` for the brand ("Apple M2"), since Python's
    ``platform.processor()`` says only "arm" there."""
    flags_of_interest = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        name = _sysctl_cpu_brand() if platform.system() == "Darwin" else None
        return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"
    if "model name" not in info and "CPU implementer" in info:  # ARM Linux names no model
        return (f"{platform.machine()} CPU (implementer {info['CPU implementer']}, part {info.get('CPU part', '?')}), "
                f"{os.cpu_count()} logical cores")
    have = [f for f in flags_of_interest if f in set(info.get("flags", "").split())]
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}), "
            f"{os.cpu_count()} logical cores, flags: {' '.join(have) or 'none of ' + '/'.join(flags_of_interest)}")


def _sysctl_cpu_brand() -> str | None:
    """macOS's CPU brand string ("Apple M2", "Intel(R) Core(TM) i7-..."), or None when sysctl cannot say."""
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait until ``device`` has finished its queued work (CUDA and MPS run kernels asynchronously), so that a
    wall-clock timer reads finished computation rather than kernel launches; nothing to wait for on the CPU.
    ``None``: every accelerator present (for timers that do not know where the work ran)."""
    if device is None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if _mps_available():
            torch.mps.synchronize()
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable, *args, **kwargs) -> tuple[object, float]:
    """``(fn(*args, **kwargs), seconds)``: wall-clock time of one call (synchronising CUDA and MPS before reading the
    clock).

    Divide by the number of calls it made (questions, tokens) for seconds per call."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    synchronize()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    synchronize()
    return result, time.perf_counter() - start


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a CPU ``torch.Generator`` seeded with ``seed``.

    Weight initialisation in ``torch.nn`` uses the global generator, so seeding it is the only way to make model
    construction reproducible; everything the course writes itself takes the returned generator explicitly.
    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return make_generator(seed, "cpu")


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as a Python int, or a ValueError naming ``what``: a non-negative int, numpy ints included (torch's
    ``manual_seed`` refuses those with 'an integer is required'), never a bool, a float or None."""
    return check_int(seed, what, minimum=0, allowed="a non-negative int")


def make_generator(seed: int, device: str | torch.device) -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` (required: the device of the tensors it will draw for)."""
    seed = check_seed(seed)
    if not isinstance(device, torch.device):
        check_device_name(device)  # 'gpu' or None: a clear error, not torch's list of every backend
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def describe_runtime(device: torch.device | None = None) -> str:
    """One line naming the torch version, the device and the hardware behind it (``device_name``: the CPU's model or
    the GPU's name, so that every timing a notebook prints is tied to a machine) and the thread count, for the first
    cell of every notebook."""
    if isinstance(device, str):  # describe_runtime("cpu") read .type off the string
        check_device_name(device)
        device = torch.device(device)
    elif device is not None and not isinstance(device, torch.device):
        raise TypeError(f"device must be a torch.device, a device name or None, got {type(device).__name__}")
    device = device or pick_device()
    hardware = device_name(device)
    name = device.type + (f" ({hardware})" if hardware != device.type else "")
    return f"torch {torch.__version__} | device {name} | {torch.get_num_threads()} CPU threads"


def device_name(device: torch.device) -> str:
    """The hardware behind ``device``, for a timing's caption: the GPU's name (CUDA), the CPU's description (the
    CPU), the Mac for MPS (Apple's Metal GPU: on Apple silicon it shares the chip with the CPU, "Metal GPU on a Mac with
    Apple M2, 8 logical cores"; an Intel Mac's is a separate AMD GPU that torch does not name), or the device type
    otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Metal GPU on a Mac with {cpu_description()}"
    return cpu_description() if device.type == "cpu" else device.type


def free_accelerator_bytes(device: torch.device | str) -> int | None:
    """Bytes the accelerator ``device`` can still allocate (CUDA: free memory; MPS: the recommended working set less
    what the driver holds), or None on the CPU, where the profiles' sizes are small and the OS decides. A cell uses it
    to skip an experiment that would not fit, saying so, instead of running out of memory."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return None


def check_generator(generator: torch.Generator | None, tensor: torch.Tensor, what: str = "tensor") -> None:
    """Raise a clear error unless ``generator`` is None or can draw for ``tensor`` (same device type and index)."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    g, d = generator.device, tensor.device
    same_index = g.index is None or d.index is None or g.index == d.index
    if g.type != d.type or not same_index:
        raise ValueError(
            f"the generator is on {g} but `{what}` is on {d}: a generator can only draw on its own device; "
            f"make it with make_generator(seed, {what}.device)"
        )
