"""Training throughput: the project's A2C update against the tutorial's own, in one process.

The reference is the tutorial's update written from SPEC.md: operands drawn per episode in Python,
a padded batch built row by row, `nn.GRU` called with sequence length 1 at every step,
`torch.distributions.Categorical` sampling, per-episode Python scoring, its loss, Adam and clipping.
The project runs `Trainer.train_step` on the tutorial's config (tutorial environment, init and
loss, hidden 96). Both on one CPU thread (or --device cuda for the project's side); rounds alternate
so that machine noise hits both alike. Prints episodes per second and the ratio.

    python benchmarks/throughput.py                      # batch 192 and 1024
    python benchmarks/throughput.py --batches 8 --updates 3 --rounds 1   # smoke test
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from distributed_agent.env import ADD, ANS, CTX, EOS, MUL, RCL, STO, SUB, VOCAB_SIZE
from distributed_agent.train import TrainConfig, Trainer


# ---- the reference: the tutorial's update, from SPEC.md ------------------------------------------

def reference_score(actions, operands, stage):
    a, b, c, d, e = operands
    last, mem = None, None
    g0 = a * b
    g1 = g0 + c
    g2 = g1 - d
    g3 = d * e
    g4 = g1 - g3
    for step, act in enumerate(actions, 1):
        if act == MUL:
            last = a * b if last is None else last * (d if stage > 0 else 1)
        elif act == ADD and last is not None:
            last += c
        elif act == SUB and last is not None:
            last -= e if stage == 2 and mem == "use_d" else (d if stage > 0 else 0)
        elif act == STO:
            mem = "use_d" if stage >= 1 else "ok"
        elif act == RCL and mem is not None:
            last = d * e if (stage == 2 and mem == "use_d") else (last if last else 0)
        elif act == ANS:
            correct = last == [g0, g1, g2][stage]
            shaped = [0.25 * (last == g0) + 0.5 * (last == g1),
                      0.25 * (last == g0) + 0.5 * (last == g1) + 0.75 * (last == g2),
                      0.2 * (last == g0) + 0.4 * (last == g1) + 0.6 * (last == g4) + 0.6 * (last == g3)][stage]
            return (1.0 if correct else 0.0) + 0.2 * shaped
        if step >= 7:
            break
    return 0.0


class ReferenceActorCritic(nn.Module):
    def __init__(self, d=96, stages=3):
        super().__init__()
        self.emb = nn.Embedding(VOCAB_SIZE, d)
        self.stage_emb = nn.Embedding(stages, d)
        self.rnn = nn.GRU(d, d, 1, batch_first=True)
        self.pi = nn.Linear(d, VOCAB_SIZE)
        self.v = nn.Linear(d, 1)

    def forward(self, ctx, stage, max_len=6):
        batch = ctx.shape[0]
        ce = self.emb(ctx).mean(1) + self.stage_emb(stage).unsqueeze(1)   # the tutorial's (B, B, d)
        h = torch.tanh(ce.mean(1)).unsqueeze(0)
        inp = self.emb(torch.full((batch, 1), CTX))
        acts, logps, ents, vals = [], [], [], []
        for _ in range(max_len):
            out, h = self.rnn(inp, h)
            val = self.v(out[:, -1])
            logits = self.pi(out[:, -1])
            pi = F.log_softmax(logits, dim=-1).exp()
            ent = -(pi * torch.log(pi + 1e-9)).sum(1)
            a = torch.distributions.Categorical(pi).sample()
            logp = F.log_softmax(logits, dim=-1).gather(1, a.unsqueeze(1)).squeeze(1)
            inp = self.emb(a.unsqueeze(1))
            acts.append(a)
            logps.append(logp)
            ents.append(ent)
            vals.append(val.squeeze(1))
        return torch.stack(acts, 1), torch.stack(logps, 1), torch.stack(ents, 1), torch.stack(vals, 1)


class ReferenceUpdate:
    def __init__(self, batch):
        torch.manual_seed(0)
        random.seed(0)
        self.batch = batch
        self.net = ReferenceActorCritic()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=3e-4)

    def step(self, stage=0):
        rows, metas = [], []
        for _ in range(self.batch):
            a, b, c, d, e = [random.randint(0, 9) for _ in range(5)]
            rows.append([[a, b, c], [a, b, c, d], [a, b, c, d, e]][stage])
            metas.append((a, b, c, d, e))
        width = max(len(r) + 1 for r in rows)
        ctx = torch.full((self.batch, width), EOS, dtype=torch.long)
        for i, r in enumerate(rows):
            ctx[i, :len(r) + 1] = torch.tensor(r + [CTX])
        stage_t = torch.full((self.batch,), stage, dtype=torch.long)
        acts, logps, ents, vals = self.net(ctx, stage_t)
        rewards = [reference_score(acts[i].tolist(), metas[i], stage) for i in range(self.batch)]
        reward = torch.tensor(rewards).float()
        adv = (reward - vals.sum(1)).detach()
        loss = -(logps.sum(1) * adv).mean() + 0.5 * F.mse_loss(vals.sum(1), reward) + 0.01 * -ents.mean()
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()


# ---- measurement -----------------------------------------------------------------------------

def episodes_per_second(step, batch, updates):
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(updates):
        step()
    return batch * updates / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[192, 1024])
    parser.add_argument("--updates", type=int, default=40, help="updates per timing round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="device of the project's side (the reference is CPU)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), project on {args.device}; "
          f"median of {args.rounds} rounds of {args.updates} updates")
    print(f"{'batch':>6} {'reference eps/s':>16} {'project eps/s':>14} {'ratio':>7}")
    for batch in args.batches:
        reference = ReferenceUpdate(batch)
        config = TrainConfig(batch_size=batch, device=args.device, num_threads=args.threads)
        trainer = Trainer(config)
        ref_rates, project_rates = [], []
        for _ in range(args.rounds):
            ref_rates.append(episodes_per_second(reference.step, batch, args.updates))
            project_rates.append(episodes_per_second(trainer.train_step, batch, args.updates))
        ref, project = statistics.median(ref_rates), statistics.median(project_rates)
        print(f"{batch:>6} {ref:>16,.0f} {project:>14,.0f} {project / ref:>6.2f}x")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
