from types import SimpleNamespace

import torch
import torch.nn.functional as F

from distributed_agent.a2c import a2c_loss as population_loss
from distributed_agent.a2c import steps_that_count
from distributed_agent.env import ANS, EOS, MUL, VOCAB_SIZE, Outcome, ToolEnv
from distributed_agent.exploration.action_novelty import ActionNovelty
from distributed_agent.exploration.epsilon import EpsilonExploration
from distributed_agent.exploration.rnd import RandomNetworkDistillation
from distributed_agent.model import ActorCritic, Rollout


def sampled(model, context, stages, steps, seed, **kwargs):
    """A sampled rollout whose Gumbel noise comes from a generator seeded with `seed`."""
    noise = model.gumbel_noise(steps, len(context), torch.Generator().manual_seed(seed))
    return model(context, stages, steps, noise=noise, **kwargs)


def a2c_loss(rollout, reward, *, entropy_coef, **kwargs):
    """The loss of one run: a2c.a2c_loss of a population of one."""
    coef = torch.as_tensor(entropy_coef, dtype=reward.dtype).expand(reward.shape)
    member = Rollout(rollout.actions[None], rollout.logits[None], rollout.values[None])
    terms = population_loss(member, reward[None], entropy_coef=coef[None], **kwargs)
    return type(terms)(*(term[0] for term in (terms.total, terms.policy, terms.value, terms.entropy)))


def batch(n=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    stages = torch.arange(n) % 3
    operands, context = ToolEnv("shifted").sample(n, stages, generator)
    return context, stages


def test_tutorial_init_equals_the_tutorials_broadcast_expression():
    torch.manual_seed(0)
    model = ActorCritic(32, init="batch_mean")
    context, stages = batch()
    # The tutorial's own expression, with its (B, d) + (B, 1, d) -> (B, B, d) broadcast.
    mixed = model.token_embedding(context).mean(1) + model.stage_embedding(stages).unsqueeze(1)
    expected = torch.tanh(mixed.mean(1))
    assert torch.allclose(model.initial_state(context, stages), expected, atol=1e-6)


def test_episode_init_depends_on_the_episode_alone():
    torch.manual_seed(0)
    model = ActorCritic(32, init="episode")
    context, stages = batch()
    whole = model.initial_state(context, stages)
    # Stage-0 rows alone have a narrower padded context (fewer EOS): same state all the same.
    rows = stages == 0
    alone = model.initial_state(context[rows][:, :4], stages[rows])
    assert torch.allclose(whole[rows], alone, atol=1e-6)
    tutorial = ActorCritic(32, init="batch_mean")
    tutorial.load_state_dict(model.state_dict())
    assert not torch.allclose(
        tutorial.initial_state(context, stages)[rows],
        tutorial.initial_state(context[rows][:, :4], stages[rows]),
        atol=1e-4,
    )


def test_sampling_is_reproducible_and_respects_the_action_mask():
    torch.manual_seed(0)
    model = ActorCritic(32)
    context, stages = batch(64)
    first = sampled(model, context, stages, 6, 5).actions
    second = sampled(model, context, stages, 6, 5).actions
    other = sampled(model, context, stages, 6, 6).actions
    assert torch.equal(first, second) and not torch.equal(first, other)
    mask = torch.zeros(18, dtype=torch.bool)
    mask[[MUL, ANS]] = True
    masked = sampled(model, context, stages, 6, 5, action_mask=mask).actions
    assert bool(((masked == MUL) | (masked == ANS)).all())
    greedy = model(context, stages, 6)
    assert torch.equal(greedy.actions, greedy.logits.argmax(-1))


def test_gumbel_max_sampling_matches_the_softmax_distribution():
    model = ActorCritic(8)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.policy_head.bias.copy_(torch.linspace(-2, 2, 18))
    context, stages = batch(20000)
    actions = sampled(model, context, stages, 1, 0).actions[:, 0]
    frequencies = torch.bincount(actions, minlength=18).float() / len(actions)
    assert torch.allclose(frequencies, F.softmax(model.policy_head.bias, 0), atol=0.01)


def made_up_rollout(seed=0, n=32, steps=6):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, steps, 18, generator=generator, requires_grad=True)
    values = torch.randn(n, steps, generator=generator, requires_grad=True)
    actions = torch.randint(10, 18, (n, steps), generator=generator)
    reward = torch.rand(n, generator=generator) * 1.2
    return Rollout(actions, logits, values), reward


def test_tutorial_loss_is_the_tutorials_formula():
    rollout, reward = made_up_rollout()
    terms = a2c_loss(rollout, reward, loss="summed_baseline", entropy_coef=0.01, value_coef=0.5)
    pi = F.log_softmax(rollout.logits, -1).exp()
    ent = -(pi * torch.log(pi + 1e-9)).sum(-1)
    logp = F.log_softmax(rollout.logits, -1).gather(-1, rollout.actions.unsqueeze(-1)).squeeze(-1)
    adv = (reward - rollout.values.sum(1)).detach()
    expected = -(logp.sum(1) * adv).mean() + 0.5 * F.mse_loss(rollout.values.sum(1), reward) + 0.01 * -ent.mean()
    assert torch.allclose(terms.total, expected, atol=1e-6)


def test_masked_loss_ignores_everything_after_ans():
    rollout, reward = made_up_rollout()
    rollout.actions[:, :2] = MUL
    rollout.actions[:, 2] = ANS
    counted = steps_that_count(rollout.actions)
    assert bool(counted[:, :3].all()) and not bool(counted[:, 3:].any())
    terms = a2c_loss(rollout, reward, loss="masked", entropy_coef=0.05, value_coef=0.5, normalize_advantage=True)
    terms.total.backward()
    assert float(rollout.logits.grad[:, 3:].abs().sum()) == 0.0
    assert float(rollout.values.grad[:, 3:].abs().sum()) == 0.0
    assert float(rollout.logits.grad[:, :3].abs().sum()) > 0.0
    # Other tokens after ANS: same loss.
    changed = Rollout(rollout.actions.clone(), rollout.logits, rollout.values)
    changed.actions[:, 3:] = MUL
    again = a2c_loss(changed, reward, loss="masked", entropy_coef=0.05, value_coef=0.5, normalize_advantage=True)
    assert torch.allclose(terms.total, again.total)
    # The tutorial loss, by contrast, gives credit after ANS.
    tutorial_rollout, _ = made_up_rollout()
    tutorial_rollout.actions[:, 2] = ANS
    a2c_loss(tutorial_rollout, reward, loss="summed_baseline", entropy_coef=0.01, value_coef=0.5).total.backward()
    assert float(tutorial_rollout.logits.grad[:, 3:].abs().sum()) > 0.0


def test_masked_loss_survives_an_action_mask():
    rollout, reward = made_up_rollout()
    with torch.no_grad():
        rollout.logits[..., :10] = float("-inf")
    terms = a2c_loss(rollout, reward, loss="masked", entropy_coef=0.3, value_coef=0.5)
    assert torch.isfinite(terms.total)
    terms.total.backward()
    assert bool(torch.isfinite(rollout.logits.grad).all())


def test_no_tokens_after_eos_matter_in_context_mean():
    torch.manual_seed(1)
    model = ActorCritic(16)
    context, stages = batch(8)
    padded = torch.cat([context, torch.full((8, 3), EOS)], 1)
    assert torch.allclose(model.initial_state(context, stages), model.initial_state(padded, stages), atol=1e-6)


def test_fast_forward_equals_the_readable_rollout():
    torch.manual_seed(3)
    for init, head in (("episode", "shared"), ("batch_mean", "shared"), ("episode", "per_stage")):
        model = ActorCritic(48, init=init, policy_head=head)
        context, stages = batch(64, seed=2)
        mask = torch.ones(18, dtype=torch.bool)
        mask[:10] = False
        noise = model.gumbel_noise(8, 64, torch.Generator().manual_seed(9))
        forced = torch.where(torch.rand(64, 8, generator=torch.Generator().manual_seed(4)) < 0.3, 12, -1)
        for kwargs in ({}, {"noise": noise}, {"noise": noise, "action_mask": mask}, {"noise": noise, "forced": forced}):
            fast = model(context, stages, 8, **kwargs)
            reference = model.rollout(context, stages, 8, **kwargs)
            assert torch.equal(fast.actions, reference.actions)
            assert torch.allclose(fast.logits, reference.logits, atol=1e-5)
            assert torch.allclose(fast.values, reference.values, atol=1e-5)
        assert bool((fast.actions[forced >= 0] == 12).all())
        # Gradients agree as well.
        rollout = model(context, stages, 6)
        grads_fast = torch.autograd.grad(rollout.logits.logsumexp(-1).sum() + rollout.values.sum(), model.parameters())
        rollout = model.rollout(context, stages, 6)
        grads_ref = torch.autograd.grad(rollout.logits.logsumexp(-1).sum() + rollout.values.sum(), model.parameters())
        for fast_grad, ref_grad in zip(grads_fast, grads_ref):
            assert torch.allclose(fast_grad, ref_grad, atol=1e-4, rtol=1e-4)


def test_per_episode_entropy_coefficient():
    rollout, reward = made_up_rollout()
    coef = torch.where(torch.arange(32) < 16, 0.3, 0.03)
    terms = a2c_loss(rollout, reward, loss="masked", entropy_coef=coef, value_coef=0.5)
    base = a2c_loss(rollout, reward, loss="masked", entropy_coef=0.0, value_coef=0.5)
    pi = F.log_softmax(rollout.logits, -1)
    entropy = -(pi.exp() * pi).sum(-1)
    counts = steps_that_count(rollout.actions).float()
    expected = (coef[:, None] * entropy * counts).sum() / counts.sum()
    assert torch.allclose(base.total - terms.total, expected, atol=1e-5)
    uniform = a2c_loss(rollout, reward, loss="masked", entropy_coef=0.1, value_coef=0.5)
    assert torch.allclose(base.total - uniform.total, 0.1 * uniform.entropy, atol=1e-5)


def test_epsilon_exploration_draws_allowed_tokens_uniformly():
    torch.manual_seed(0)
    model = ActorCritic(16)
    context, stages = batch(4000)
    mask = torch.zeros(18, dtype=torch.bool)
    mask[10:16] = True
    config = SimpleNamespace(explore_epsilon=1.0, explore_decay_episodes=None)
    run = SimpleNamespace(config=config, episodes=0, action_mask=mask, generator=torch.Generator().manual_seed(1))
    forced = EpsilonExploration().forced_tokens(run, 2, len(context))
    actions = sampled(model, context, stages, 2, 1, action_mask=mask, forced=forced).actions
    frequencies = torch.bincount(actions.flatten(), minlength=18).float() / actions.numel()
    assert torch.allclose(frequencies[10:16], torch.full((6,), 1 / 6), atol=0.015)
    assert frequencies[:10].sum() == 0 and frequencies[16:].sum() == 0


def ending_at(length: torch.Tensor) -> Outcome:
    """An outcome whose episodes end at `length` tokens (nothing else of it is read here)."""
    zeros = torch.zeros_like(length)
    return Outcome(zeros.float(), zeros.bool(), zeros.bool(), zeros, zeros.bool(), zeros, length)


def test_action_novelty_counts_each_stage_and_prefix_up_to_the_last_token():
    ADD, SUB = MUL + 1, MUL + 2
    actions = torch.tensor(
        [
            [MUL, ADD, ANS, SUB],  # ends at ANS: 3 counted steps
            [MUL, ADD, ANS, SUB],  # the same episode again
            [MUL, ADD, ANS, SUB],  # the same tokens at another stage
            [MUL, SUB, ANS, ADD],  # shares its first prefix with the first
        ]
    )
    stages, length = torch.tensor([0, 0, 1, 0]), torch.tensor([3, 3, 3, 3])
    episodes = SimpleNamespace(rollout=SimpleNamespace(actions=actions), stages=stages, outcome=ending_at(length))
    run = SimpleNamespace(config=SimpleNamespace(action_novelty_bonus=2.0))
    novelty = ActionNovelty("prefix", "cpu")
    cells, counted = novelty.cells(episodes)
    assert counted.tolist() == [[True, True, True, False]] * 4
    assert cells[0].tolist() == cells[1].tolist() and len(set(cells[:, :3].flatten().tolist())) == 3 + 3 + 2
    assert cells[0, 0] == cells[3, 0] and cells[0, 1] != cells[3, 1] and cells[0, 0] != cells[2, 0]
    assert novelty.reward_bonus(run, episodes).tolist() == [6.0] * 4  # nothing seen before this batch
    # The second time a prefix seen n times earns 1/sqrt(1 + n): [MUL] at stage 0 was seen 3 times.
    again = novelty.reward_bonus(run, episodes)
    twice, once = 2 * (1 / 4**0.5 + 2 / 3**0.5), 2 * (1 / 4**0.5 + 2 / 2**0.5)
    assert torch.allclose(again, torch.tensor([twice, twice, 6 / 2**0.5, once]))
    restored = ActionNovelty("prefix", "cpu")
    restored.load_state_dict(novelty.state_dict())
    assert torch.equal(restored.visits, novelty.visits) and len(novelty.state_dict()["cells"]) == 8
    # The other abstractions: the set of tokens so far forgets their order, `last` keeps only the token.
    by_set, _ = ActionNovelty("set", "cpu").cells(episodes)
    assert by_set[0, 1] != by_set[3, 1] and by_set[0, 2] != by_set[3, 2]  # {MUL, ADD} vs {MUL, SUB}
    swapped = SimpleNamespace(**{**vars(episodes), "rollout": SimpleNamespace(actions=actions[:, [1, 0, 2, 3]])})
    assert torch.equal(ActionNovelty("set", "cpu").cells(swapped)[0][:, 1:], by_set[:, 1:])
    by_last, _ = ActionNovelty("last", "cpu").cells(episodes)
    assert by_last[0, 2] == by_last[3, 2] and by_last[0, 1] != by_last[3, 1] and by_last[0, 0] != by_last[2, 0]


def test_rnd_bonus_starts_at_one_per_step_and_fades_on_states_seen_again():
    states = torch.randn(64, 5, 16, generator=torch.Generator().manual_seed(0))
    episodes = SimpleNamespace(rollout=SimpleNamespace(hiddens=states), outcome=ending_at(torch.full((64,), 4)))
    run = SimpleNamespace(config=SimpleNamespace(rnd_bonus=0.5))
    rnd = RandomNetworkDistillation(16, seed=3, device="cpu")
    first = rnd.reward_bonus(run, episodes)
    assert abs(first.mean().item() - 0.5 * 4) < 1e-5  # 4 counted steps, 1 each on average, weight 0.5
    for _ in range(200):
        later = rnd.reward_bonus(run, episodes)
    assert later.mean() < 0.2 * first.mean()
    novel = SimpleNamespace(**{**vars(episodes), "rollout": SimpleNamespace(hiddens=states + 3)})
    restored = RandomNetworkDistillation(16, seed=3, device="cpu")
    restored.load_state_dict(rnd.state_dict())
    assert torch.equal(restored.errors(states), rnd.errors(states))
    assert (rnd.errors(novel.rollout.hiddens) > rnd.errors(states)).float().mean() > 0.9  # unseen states earn more


def test_rnd_on_the_history_reads_the_stage_and_the_tokens_so_far_and_nothing_else():
    generator = torch.Generator().manual_seed(1)
    actions = torch.randint(VOCAB_SIZE, (32, 5), generator=generator)
    stages = torch.randint(3, (32,), generator=generator)
    agent_states = torch.randn(32, 5, 16, generator=generator)

    def episodes(actions, stages, hiddens):
        rollout = SimpleNamespace(actions=actions, hiddens=hiddens)
        return SimpleNamespace(rollout=rollout, stages=stages, outcome=ending_at(torch.full((32,), 4)))

    rnd = RandomNetworkDistillation(16, seed=3, device="cpu", states="history")
    states = rnd.states(episodes(actions, stages, agent_states))
    assert torch.equal(rnd.states(episodes(actions, stages, agent_states + 1)), states)  # not the agent's state
    changed = actions.clone()
    changed[:, 3] = (changed[:, 3] + 1) % VOCAB_SIZE
    moved = (rnd.states(episodes(changed, stages, agent_states)) != states).any(-1)
    assert not moved[:, :3].any() and moved[:, 3:].all()  # a token changes its own step's state and later ones
    assert (rnd.states(episodes(actions, (stages + 1) % 3, agent_states)) != states).any(-1).all()
    # The same seed draws the same networks as with the agent's states, plus the history's GRU.
    assert torch.equal(rnd.target[0], RandomNetworkDistillation(16, seed=3, device="cpu").target[0])
    run = SimpleNamespace(config=SimpleNamespace(rnd_bonus=1.0))
    rnd.reward_bonus(run, episodes(actions, stages, agent_states))
    restored = RandomNetworkDistillation(16, seed=4, device="cpu", states="history")
    restored.load_state_dict(rnd.state_dict())
    assert torch.equal(restored.states(episodes(actions, stages, agent_states)), states)
    assert torch.equal(restored.errors(states), rnd.errors(states))


def test_replay_feeds_the_given_actions_and_scores_them_under_the_policy():
    torch.manual_seed(0)
    model = ActorCritic(32, policy_head="per_stage")
    context, stages = batch(50)
    original = sampled(model, context, stages, 6, 3)
    replayed = model(context, stages, 6, forced=original.actions)
    assert torch.equal(replayed.actions, original.actions)
    assert torch.allclose(replayed.logits, original.logits) and torch.allclose(replayed.values, original.values)
