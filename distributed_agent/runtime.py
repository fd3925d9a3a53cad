"""Process-wide settings, applied by the entry points (CLI, Tune trainable, benchmarks), never by
a library call: the torch thread count and glibc's allocator thresholds."""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .config import ConfigError, TrainConfig


def apply_process_settings(config: TrainConfig) -> None:
    """Set this process up to train `config`: its torch threads, and freed memory kept for reuse."""
    torch.set_num_threads(config.num_threads)
    keep_freed_memory()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with `count` torch threads, then restore the process's count. Numbers depend on
    the thread count (sums are split differently), so `train()` runs under config.num_threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_description() -> str:
    """The CPU model and the instruction set torch's kernels use on it, e.g. 'Intel(R) Xeon(R)
    Processor, AVX512'. Trained numbers are bit-identical for one pair, not across: kernels for
    other instruction sets round differently in the last bit, and a long training amplifies that
    (measured in results/tutorial_search_confirm/README.md)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.partition(":")[2].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:  # not Linux
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}"


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS at once.

    By default glibc unmaps every freed block over 128 KiB and trims the heap past 128 KiB free,
    so each update touched its temporary tensors as fresh pages again: about 900 page faults, 2 ms
    of a 10.5 ms update at batch 192 (benchmarks/allocator_ab.py). Nothing happens where the C
    library has no mallopt (macOS).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # no mallopt, or no C library to load this way
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 128 << 20)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked but CUDA is not available here; use auto or cpu")
    return torch.device(name)
