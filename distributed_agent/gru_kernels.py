"""The CPU kernels of the fused rollout (gru_cell.cpp): each GRU-cell step's elementwise work in
one pass over memory instead of a dozen torch operations, with the same numbers.

Built once per machine and torch version with torch's JIT extension builder (a C++ compiler and
ninja; ~30 s, cached under ~/.cache/torch_extensions or $TORCH_EXTENSIONS_DIR) the first time a
process trains on the CPU. Used only where they reproduce torch's own operations bit for bit on a
probe at load time (`_reproduces_torch`): the torch operations in fused_rollout.py are the
specification and the path on every other device. Where the build or the probe fails, one warning
says so and training goes on with the torch operations: slower, the same numbers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("gru_cell.cpp")
# Kept off by tests that compare the kernels with the torch operations they replace.
enabled = True


def for_tensor(tensor: torch.Tensor):
    """The kernels module for a tensor's device and dtype, or None: use the torch operations."""
    if not enabled or tensor.device.type != "cpu" or tensor.dtype != torch.float32:
        return None
    return _load()


@functools.cache
def _load():
    try:
        kernels = _build()
    except Exception as error:  # no compiler, no ninja, a read-only cache: the torch path still works
        warnings.warn(
            f"distributed_agent: CPU GRU kernels unavailable ({error}); using torch operations (same numbers, slower)",
            stacklevel=3,
        )
        return None
    if not _reproduces_torch(kernels):
        warnings.warn(
            "distributed_agent: CPU GRU kernels round differently from torch on this machine; using torch operations",
            stacklevel=3,
        )
        return None
    return kernels


def _build():
    from torch.utils import cpp_extension

    try:  # pip's ninja (a dependency) is in the environment's bin, which need not be on PATH
        import ninja

        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
    except ImportError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    # No fused multiply-adds but the explicit std::fma (torch's addcmul is one); the instruction
    # set torch's own kernels use, so that std::fma is an instruction, not a library call.
    flags = ["-O3", "-ffp-contract=off"] + (["-mavx2", "-mfma"] if capability in ("AVX2", "AVX512") else [])
    # A build per instruction set, torch and Python version, torch installation and source: a home
    # directory shared by a cluster's nodes holds one for each kind of node, an upgraded torch never
    # loads a stale build, and checkouts of the same source in one environment share one (torch
    # rebuilds when a source's path changes, so each build compiles its own copy of the source).
    # Two environments do not share one: the compile command names the installation's headers, so
    # ninja rebuilt a shared one whenever the other environment had built it last (~30 s each time).
    code = SOURCE.read_bytes()
    installation = str(Path(torch.__file__).resolve().parent).encode()
    digest = hashlib.sha256(code + " ".join(flags).encode() + installation).hexdigest()[:12]
    python = f"{sys.version_info.major}{sys.version_info.minor}"
    name = re.sub(
        r"\W", "_", f"distributed_agent_gru_cell_{capability}_torch{torch.__version__}_py{python}_{digest}".lower()
    )
    # Under $TORCH_EXTENSIONS_DIR, else torch's default root (~/.cache/torch_extensions).
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    build = Path(root) / name
    build.mkdir(parents=True, exist_ok=True)
    import fcntl  # in here: where it is missing (not POSIX), the build fails and training goes on without

    with open(build / "builders.lock", "w") as builders:
        # A lock the system releases when its holder dies, around torch's own: torch's is a plain file
        # that a process killed while building or loading leaves behind, and torch then waits on it
        # forever (every later training on the machine hung). Holding this one, no live process is
        # inside torch's, so a file left there is stale.
        fcntl.flock(builders, fcntl.LOCK_EX)
        (build / "lock").unlink(missing_ok=True)
        source = build / SOURCE.name
        if not source.exists() or source.read_bytes() != code:
            shutil.copyfile(SOURCE, source)
        return cpp_extension.load(name, [str(source)], extra_cflags=flags, build_directory=str(build))


def _reproduces_torch(kernels) -> bool:
    """Whether the kernels give the reference steps' bits (fused_rollout) on random inputs."""
    from .fused_rollout import cell_backward_reference, cell_forward_reference

    generator = torch.Generator().manual_seed(0)
    members, batch, size, rows = 3, 5, 37, 7  # odd sizes: vectorised bodies and scalar tails
    table = torch.randn(members * rows, 3 * size, generator=generator)
    row_index = torch.randint(members * rows, (members, batch), generator=generator)
    from_hidden = torch.randn(members, batch, 3 * size, generator=generator)
    previous, grad_out, carry = torch.randn(3, members, batch, size, generator=generator)

    def forward(step):
        outputs = [torch.empty(members, batch, n) for n in (2 * size, size, size)]
        step(table, row_index, from_hidden, previous, *outputs)
        return outputs

    def backward(step, gates, candidate):
        grad_gates = torch.empty(members, batch, 4 * size)
        return [grad_gates, step(grad_out, carry, gates, candidate, previous, from_hidden, grad_gates)]

    reference = forward(cell_forward_reference)
    reference += backward(cell_backward_reference, *reference[:2])
    ours = forward(functools.partial(cell_forward_kernels, kernels))
    ours += backward(functools.partial(cell_backward_kernels, kernels), *reference[:2])
    return all(torch.equal(a, b) for a, b in zip(reference, ours))


def cell_forward_kernels(kernels, table, row_index, from_hidden, previous, gates, candidate, next_hidden) -> None:
    """fused_rollout.cell_forward_reference in three kernel passes around torch's two sigmoids."""
    kernels.gates_preactivation(table, row_index, from_hidden, gates)
    torch.sigmoid_(gates)
    kernels.candidate_preactivation(table, row_index, gates, from_hidden, candidate)
    torch.sigmoid_(candidate)
    kernels.new_hidden(gates, candidate, previous, next_hidden)


def cell_backward_kernels(kernels, grad_out, carry, gates, candidate, previous, from_hidden, grad_gates):
    """fused_rollout.cell_backward_reference in one kernel pass."""
    direct = torch.empty_like(candidate)
    kernels.step_backward(grad_out, carry, gates, candidate, previous, from_hidden, grad_gates, direct)
    return direct
