"""Do batched operations over a stacked population of K models give, slice by slice, the same bits
as the per-model operations of the update? (groundwork for issue #13: populations of seeds trained
as one must reproduce each seed trained alone). One thread, float32, random inputs; prints one line
per operation with True/False.

    python benchmarks/batched_identity_probe.py                      # K 16, batch 192, hidden 96
    python benchmarks/batched_identity_probe.py --members 4 --batch 8 --hidden 16   # smoke test
"""

from __future__ import annotations

import argparse

import torch


def probe(members: int, batch: int, hidden: int, steps: int = 8) -> dict[str, bool]:
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    h, w, b = randn(members, batch, hidden), randn(members, 3 * hidden, hidden), randn(members, 3 * hidden)
    grads, hiddens = randn(members, steps * batch, 3 * hidden), randn(members, steps * batch, hidden)
    return {
        "GRU step: addmm per member == baddbmm": torch.equal(
            torch.stack([torch.addmm(b[k], h[k], w[k].t()) for k in range(members)]),
            torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)),
        ),
        "weight gradient: g.t() @ h per member == bmm": torch.equal(
            torch.stack([grads[k].t().mm(hiddens[k]) for k in range(members)]),
            torch.bmm(grads.transpose(1, 2), hiddens),
        ),
        "bias gradient: sum over rows per member == sum(1)": torch.equal(
            torch.stack([grads[k].sum(0) for k in range(members)]), grads.sum(1)
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--batch", type=int, default=192)
    parser.add_argument("--hidden", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread, K {args.members}, batch {args.batch}, hidden {args.hidden}")
    for name, identical in probe(args.members, args.batch, args.hidden).items():
        print(f"{name}: {identical}")


if __name__ == "__main__":
    main()
