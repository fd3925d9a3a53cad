"""The tutorial as SPEC.md states it, transcribed independently of the package: its scoring in
plain Python, its actor-critic (`nn.GRU` called step by step, `Categorical` sampling, the (B, B, d)
initial state) and its update. The reference for benchmarks/throughput.py and for the test of the
package's batched scoring."""

from __future__ import annotations

import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from distributed_agent.env import ADD, ANS, CTX, EOS, MUL, RCL, STO, SUB, VOCAB_SIZE


def tutorial_score(actions, operands, stage):
    """(reward, correct) of one episode: SPEC.md, table "Tutorial environment", in plain Python."""
    a, b, c, d, e = operands
    last, mem = None, None
    g0 = a * b
    g1 = g0 + c
    g2 = g1 - d
    g3 = d * e
    g4 = g1 - g3
    for step, act in enumerate(actions, start=1):
        if act == MUL:
            last = a * b if last is None else last * (d if stage > 0 else 1)
        elif act == ADD:
            if last is not None:
                last += c
        elif act == SUB:
            if last is not None:
                last -= e if (stage == 2 and mem == "use_d") else (d if stage > 0 else 0)
        elif act == STO:
            mem = "use_d" if stage >= 1 else "ok"
        elif act == RCL:
            if mem is not None:
                last = d * e if (stage == 2 and mem == "use_d") else (last if last else 0)
        elif act == ANS:
            correct = last is not None and last == [g0, g1, g2][stage]

            def eq(goal, last=last):
                return last is not None and last == goal

            if stage == 0:
                shaped = 0.25 * eq(g0) + 0.5 * eq(g1)
            elif stage == 1:
                shaped = 0.25 * eq(g0) + 0.5 * eq(g1) + 0.75 * eq(g2)
            else:
                shaped = 0.2 * eq(g0) + 0.4 * eq(g1) + 0.6 * eq(g4) + 0.6 * eq(g3)
            return (1.0 if correct else 0.0) + 0.2 * (0.0 + shaped), correct
        if step >= 7:
            break
    return 0.0, False


class ReferenceActorCritic(nn.Module):
    def __init__(self, d=96, stages=3):
        super().__init__()
        self.emb = nn.Embedding(VOCAB_SIZE, d)
        self.stage_emb = nn.Embedding(stages, d)
        self.rnn = nn.GRU(d, d, 1, batch_first=True)
        self.pi = nn.Linear(d, VOCAB_SIZE)
        self.v = nn.Linear(d, 1)

    def forward(self, ctx, stage, max_len=6, greedy=False):
        batch = ctx.shape[0]
        ce = self.emb(ctx).mean(1) + self.stage_emb(stage).unsqueeze(1)  # the tutorial's (B, B, d)
        h = torch.tanh(ce.mean(1)).unsqueeze(0)
        inp = self.emb(torch.full((batch, 1), CTX))
        acts, logps, ents, vals = [], [], [], []
        for _ in range(max_len):
            out, h = self.rnn(inp, h)
            val = self.v(out[:, -1])
            logits = self.pi(out[:, -1])
            pi = F.log_softmax(logits, dim=-1).exp()
            ent = -(pi * torch.log(pi + 1e-9)).sum(1)
            a = torch.argmax(logits, 1) if greedy else torch.distributions.Categorical(pi).sample()
            logp = F.log_softmax(logits, dim=-1).gather(1, a.unsqueeze(1)).squeeze(1)
            inp = self.emb(a.unsqueeze(1))
            acts.append(a)
            logps.append(logp)
            ents.append(ent)
            vals.append(val.squeeze(1))
        return torch.stack(acts, 1), torch.stack(logps, 1), torch.stack(ents, 1), torch.stack(vals, 1)


class ReferenceUpdate:
    def __init__(self, batch, seed=0, hidden=96):
        torch.manual_seed(seed)
        random.seed(seed)
        self.batch = batch
        self.net = ReferenceActorCritic(hidden)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=3e-4)

    @staticmethod
    def batch_of(stage, size):
        """The tutorial's batch: operands drawn in Python, contexts padded row by row."""
        rows, metas = [], []
        for _ in range(size):
            a, b, c, d, e = [random.randint(0, 9) for _ in range(5)]
            rows.append([[a, b, c], [a, b, c, d], [a, b, c, d, e]][stage])
            metas.append((a, b, c, d, e))
        width = max(len(r) + 1 for r in rows)
        ctx = torch.full((size, width), EOS, dtype=torch.long)
        for i, r in enumerate(rows):
            ctx[i, : len(r) + 1] = torch.tensor(r + [CTX])
        return ctx, torch.full((size,), stage, dtype=torch.long), metas

    def step(self, stage=0):
        ctx, stage_t, metas = self.batch_of(stage, self.batch)
        acts, logps, ents, vals = self.net(ctx, stage_t)
        rewards = [tutorial_score(acts[i].tolist(), metas[i], stage)[0] for i in range(self.batch)]
        reward = torch.tensor(rewards).float()
        adv = (reward - vals.sum(1)).detach()
        loss = -(logps.sum(1) * adv).mean() + 0.5 * F.mse_loss(vals.sum(1), reward) + 0.01 * -ents.mean()
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()

    @torch.no_grad()
    def greedy_success(self, stage, episodes=1000):
        """The share of correct greedy answers, as the tutorial's final evaluation batches them."""
        ctx, stage_t, metas = self.batch_of(stage, episodes)
        acts = self.net(ctx, stage_t, greedy=True)[0]
        return sum(tutorial_score(acts[i].tolist(), metas[i], stage)[1] for i in range(episodes)) / episodes
