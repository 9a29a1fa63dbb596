import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from storyjax import model as M
from storyjax import reinforce as R
from storyjax import reward as RW
from storyjax import rollout as RO
from storyjax import sampler as S

CFG = M.ModelConfig(vocab_size=64, num_layers=2, d_model=64, num_heads=4, max_len=32, dropout=0.0)
EOS, PAD = 2, 1


def rl_section(**kw):
    c = ml_collections.ConfigDict(dict(lr=1e-2, grad_clip=1.0, baseline="batch_mean", ema_decay=0.9, whiten=False,
                                       kl_coef=0.0, kl_target=0.0, kl_horizon=10_000.0, kl_estimator="k3",
                                       kl_mode="loss", entropy_coef=0.0))
    c.update(kw)
    return c


def rl_cfg(**kw):
    return R.RLConfig.from_config(rl_section(**kw))


def setup(**kw):
    cfg = rl_cfg(**kw)
    params = M.init_params(CFG, jax.random.key(0))
    opt = R.make_optimizer(cfg)
    return R.init_state(params, opt, cfg), params, make_step(cfg, opt)


def make_step(cfg, opt):
    """The jitted step, fed each story's reward."""
    step = R.make_step(CFG, cfg, opt)

    def with_rewards(state, ref, tokens, valid, response, rewards_B):
        return step(state, ref, RO.Rollout(tokens, valid, response, jnp.asarray(rewards_B, jnp.float32)))
    return with_rewards


def rollouts(params, rng, B=32, N=10):
    prompt = jnp.tile(jnp.asarray([[5, 6, 7, 8]], jnp.int32), (B, 1))
    out = S.sample(CFG, params, prompt, jnp.ones_like(prompt, bool), jax.random.key(rng), jnp.float32(1.0),
                   jnp.int32(0), jnp.float32(1.0), max_new_tokens=N, eos_id=EOS, pad_id=PAD)
    tokens = jnp.concatenate([prompt, out.tokens_BxN], 1)
    valid = jnp.concatenate([jnp.ones_like(prompt, bool), out.mask_BxN], 1)
    response = jnp.concatenate([jnp.zeros_like(prompt, bool), out.mask_BxN], 1)
    return tokens, valid, response, out


def test_paper_reward_formula_with_configurable_weights():
    scores = jnp.asarray([[1, 2, 3], [0, 0, 0], [3, 3, 3], [np.nan] * 3])
    words = jnp.asarray([45.0, 0.0, 120.0, 30.0])
    r = RW.story_rewards(RW.RewardConfig((1, 1, 1), 0.4, 90.0), scores, words).reward_B
    expected = [((1 + 2 + 3) / 9 + 0.4 * 45 / 90) / 1.4, 0.0, (1 + 0.4) / 1.4]
    np.testing.assert_allclose(r[:3], expected, rtol=1e-6)
    assert np.isnan(r[3])
    weighted = RW.story_rewards(RW.RewardConfig((2, 1, 1), 0.0, 90.0), scores[:1], words[:1]).reward_B
    np.testing.assert_allclose(weighted, [(2 * 1 + 2 + 3) / 12], rtol=1e-6)


def test_baselines_against_numpy_and_unscored_rows_are_excluded():
    r = np.asarray([0.2, np.nan, 0.8, 0.5, np.nan, 0.1], np.float32)
    s = ~np.isnan(r)
    rs = r[s]
    adv, _ = R.advantages(jnp.asarray(r), jnp.nan, "leave_one_out", 0.9, False)
    loo = rs - (rs.sum() - rs) / (len(rs) - 1)
    np.testing.assert_allclose(np.asarray(adv)[s], loo, rtol=1e-6)
    assert (np.asarray(adv)[~s] == 0).all()
    adv, _ = R.advantages(jnp.asarray(r), jnp.nan, "batch_mean", 0.9, False)
    np.testing.assert_allclose(np.asarray(adv)[s], rs - rs.mean(), rtol=1e-6, atol=1e-7)
    # EMA over three batches, against the recurrence written out in numpy.
    b, ref = jnp.asarray(np.nan, jnp.float32), None
    for batch in ([0.2, 0.4, np.nan], [0.9, np.nan, 0.7], [np.nan, np.nan, np.nan], [0.1, 0.3, 0.2]):
        batch = np.asarray(batch, np.float32)
        adv, b = R.advantages(jnp.asarray(batch), b, "ema", 0.9, False)
        fin = batch[~np.isnan(batch)]
        used = (fin.mean() if ref is None else ref) if len(fin) else ref
        np.testing.assert_allclose(np.asarray(adv)[~np.isnan(batch)], fin - used, rtol=1e-5, atol=1e-7)
        if len(fin):
            ref = fin.mean() if ref is None else 0.9 * ref + 0.1 * fin.mean()
        np.testing.assert_allclose(float(b), ref, rtol=1e-6)
    white, _ = R.advantages(jnp.asarray(r), jnp.nan, "batch_mean", 0.9, True)
    w = np.asarray(white)[s]
    assert abs(w.mean()) < 1e-6 and abs(w.std(ddof=1) - 1) < 1e-3


def test_kl_estimators_and_adaptive_controller():
    logp, logp_ref = jnp.asarray([-1.0, -2.0]), jnp.asarray([-1.5, -1.0])
    np.testing.assert_allclose(R.kl_per_token(logp, logp_ref, "k1"), [0.5, -1.0])
    k3 = np.asarray(R.kl_per_token(logp, logp_ref, "k3"))
    np.testing.assert_allclose(k3, np.exp([-0.5, 1.0]) - 1 - np.array([-0.5, 1.0]), rtol=1e-6)
    assert (k3 >= 0).all()
    assert float(R.adaptive_kl(0.2, 12.0, 6.0, 10_000, 360)) == pytest.approx(0.2 * (1 + 0.2 * 360 / 10_000))
    assert float(R.adaptive_kl(0.2, 3.0, 6.0, 10_000, 360)) == pytest.approx(0.2 * (1 - 0.2 * 360 / 10_000))


def test_zero_advantage_gives_zero_policy_gradient():
    state, params, step = setup()
    tokens, valid, response, _ = rollouts(params, 0)
    rewards = jnp.full((tokens.shape[0],), 0.5).at[3].set(jnp.nan)
    before = jax.tree.map(np.asarray, params)
    state, m = step(state, params, tokens, valid, response, rewards)
    assert float(m["grad_norm"]) == 0.0 and float(m["advantage_abs"]) == 0.0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)):
        np.testing.assert_array_equal(a, b)
    assert int(m["scored"]) == tokens.shape[0] - 1


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_term_is_zero_when_params_equal_the_reference(estimator):
    state, params, step = setup(kl_coef=0.1, kl_estimator=estimator, kl_mode="reward")
    tokens, valid, response, _ = rollouts(params, 0)
    _, m = step(state, params, tokens, valid, response, jnp.linspace(0, 1, tokens.shape[0]))
    assert abs(float(m["kl"])) < 1e-6  # two evaluations of the same function, float32 rounding only


def test_rewarded_token_becomes_more_likely():
    state, params, step = setup(baseline="ema")
    ref = jax.tree.map(jnp.copy, params)
    target = 9

    def prob_of_target(p):
        tokens, valid, _, _ = rollouts(params, 123)
        logits = M.forward(CFG, p, tokens[:, :4])[:, -1]
        return float(jax.nn.softmax(logits)[:, target].mean())

    p0 = prob_of_target(params)
    for k in range(6):
        tokens, valid, response, out = rollouts(state.params, k)
        rewards = (np.asarray(out.tokens_BxN) == target).mean(1) * 10
        rewards = jnp.asarray(rewards, jnp.float32).at[0].set(jnp.nan)  # one unscorable story rides along
        state, m = step(state, ref, tokens, valid, response, rewards)
    assert prob_of_target(state.params) > 3 * p0
    assert float(m["kl"]) > 0 and np.isfinite(float(state.baseline))


def test_tokens_after_end_of_text_do_not_move_the_gradient():
    state, params, step = setup()
    tokens, valid, response, _ = rollouts(params, 1)
    rewards = jnp.linspace(0, 1, tokens.shape[0])
    _, m1 = step(R.init_state(params, R.make_optimizer(rl_cfg()), rl_cfg()), params, tokens, valid, response, rewards)
    junk = jnp.where(response | valid, tokens, 17)  # rewrite only what is neither prompt nor response
    _, m2 = step(R.init_state(params, R.make_optimizer(rl_cfg()), rl_cfg()), params, junk, valid, response, rewards)
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), abs=1e-6)


def test_bad_settings_are_refused():
    """Parsed once into a typed record that checks itself; the step takes only that record."""
    with pytest.raises(ValueError, match="rl.baseline='median' is unknown"):
        R.RLConfig.from_config(rl_section(baseline="median"))
    with pytest.raises(ValueError, match="rl.kl_estimator"):  # a record built by hand checks itself too
        R.make_step(CFG, R.RLConfig(kl_estimator="k2"), R.make_optimizer(rl_cfg()))
    with pytest.raises(ValueError, match=r"rl.ema_decay=1.5 must be in \[0, 1\)"):
        R.RLConfig.from_config(rl_section(ema_decay=1.5))
    with pytest.raises(TypeError, match="RLConfig.from_config"):
        R.make_step(CFG, rl_section(), R.make_optimizer(rl_cfg()))
    with pytest.raises(ValueError, match="reward.weights"):
        RW.RewardConfig.from_config(ml_collections.ConfigDict(dict(weights=(1, 1), length_bonus=0.4, length_norm=90,
                                                                   control="")))


def test_the_paper_reward_reaches_the_step_and_unscorable_stories_get_no_advantage():
    cfg = rl_cfg()
    params = M.init_params(CFG, jax.random.key(0))
    opt = R.make_optimizer(cfg)
    step = R.make_step(CFG, cfg, opt)
    tokens, valid, response, out = rollouts(params, 0, B=4)
    scores = np.asarray([[1, 2, 3], [3, 3, 3], [2, np.nan, 1], [0, 0, 0]], np.float32)
    words = np.asarray([45, 120, 30, 0], np.float32)
    story = RW.story_rewards(RW.RewardConfig((1, 1, 1), 0.4, 90.0), scores, words)
    expected = [((1 + 2 + 3) / 9 + 0.4 * 45 / 90) / 1.4, (1 + 0.4) / 1.4, np.nan, 0.0]
    np.testing.assert_allclose(story.reward_B, expected, rtol=1e-6)  # a partly graded story is unscorable whole
    np.testing.assert_allclose(story.teacher_B[[0, 1, 3]], [6 / 9, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(story.bonus_B, 0.4 * np.minimum(words, 90) / 90, rtol=1e-6)
    batch = RO.make(tokens[:, :4], valid[:, :4], out, story.reward_B)
    _, m = step(R.init_state(params, opt, cfg), params, batch)
    assert int(m["scored"]) == 3
    assert float(m["reward_scored"]) == pytest.approx(np.nanmean(expected), rel=1e-6)
    assert all(np.ndim(v) == 0 for v in m.values())  # the update returns scalars only


def test_kl_penalty_is_centred_in_its_batch_so_a_rising_coefficient_biases_no_advantage():
    r = jnp.asarray([0.5, 0.5, np.nan, 0.5, 0.5], jnp.float32)
    kl = jnp.asarray([1.0, 3.0, 100.0, 2.0, 6.0], jnp.float32)  # the unscorable row's KL is left out
    # An EMA baseline that already holds the teacher's reward: only the penalty, centred, is left.
    adv, ema = R.kl_advantages(r, kl, 2.0, jnp.float32(0.5), "ema", 0.9, False)
    np.testing.assert_allclose(np.asarray(adv), [4.0, 0.0, 0.0, 2.0, -6.0], atol=1e-6)
    assert float(ema) == pytest.approx(0.5)
    # With the batch mean as baseline it is exactly baselining the penalised reward r - beta*KL.
    adv_bm, _ = R.kl_advantages(r, kl, 2.0, jnp.nan, "batch_mean", 0.9, False)
    shaped, _ = R.advantages(r - 2.0 * kl, jnp.nan, "batch_mean", 0.9, False)
    np.testing.assert_allclose(np.asarray(adv_bm), np.asarray(shaped), atol=1e-6)


def test_token_kl_penalty_charges_each_token_for_what_it_and_its_successors_incur():
    r = jnp.asarray([0.5, 0.5, np.nan, 0.5], jnp.float32)
    mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]], jnp.float32)
    kl = jnp.asarray([[0.5, 1.0, 2.0, 0.0], [0.0, 0.0, 3.0, 1.0], [9.0, 9.0, 9.0, 9.0], [1.0, 1.0, 0.0, 0.0]])
    adv, ema = R.kl_token_advantages(r, kl * mask, mask, 1.0, jnp.float32(0.5), "ema", 0.9, False)
    adv = np.asarray(adv)
    togo = np.asarray([[3.5, 3.0, 2.0, 0.0], [4.0, 4.0, 4.0, 1.0], [0.0] * 4, [2.0, 1.0, 0.0, 0.0]])
    live = np.asarray(mask) * [[1], [1], [0], [1]]
    centre = (togo * live).sum(0) / live.sum(0)
    np.testing.assert_allclose(adv, -(togo - centre) * live, atol=1e-6)
    assert float(ema) == pytest.approx(0.5)
    assert (adv[2] == 0).all()  # the unscorable story moves nothing, and its KL is in no centre
    # A token is not charged for the KL its predecessors incurred (noise to its gradient): raising the
    # first token's KL moves that token's advantage and no later one.
    kl2 = kl.at[1, 0].add(5.0)
    adv2 = np.asarray(R.kl_token_advantages(r, kl2 * mask, mask, 1.0, jnp.float32(0.5), "ema", 0.9, False)[0])
    np.testing.assert_allclose(adv2[:, 1:], adv[:, 1:], atol=1e-6)
    assert adv2[1, 0] < adv[1, 0] - 3


def exact_kl(params, ref, tokens):
    """Mean over positions of KL(π(·|ctx) ‖ π_ref(·|ctx)), from the full next-token distributions."""
    logp = jax.nn.log_softmax(M.forward(CFG, params, tokens))
    logq = jax.nn.log_softmax(M.forward(CFG, ref, tokens))
    return float((jnp.exp(logp) * (logp - logq)).sum(-1).mean())


@pytest.mark.parametrize("mode", ["reward", "reward_token", "loss"])
def test_kl_penalty_pulls_a_drifted_student_back_to_its_reference(mode):
    """A student pushed away from its reference, then given equal rewards and a KL coefficient, comes back:
    in every mode the penalty's gradient points towards π_ref (with k3 as a REINFORCE reward it did not)."""
    state, ref, step = setup(baseline="ema", lr=3e-3)
    for k in range(6):  # drift: reward the token 9
        tokens, valid, response, out = rollouts(state.params, k)
        state, _ = step(state, ref, tokens, valid, response, (np.asarray(out.tokens_BxN) == 9).mean(1) * 10)
    probe = rollouts(ref, 999, B=64)[0]
    drifted = exact_kl(state.params, ref, probe)
    cfg = rl_cfg(baseline="ema", lr=3e-3, kl_coef=1.0, kl_mode=mode, kl_estimator="k3")
    back = R.make_optimizer(cfg)
    state = R.RLState(state.params, back.init(state.params), jnp.float32(0.5), jnp.float32(cfg.kl_coef))
    pull = make_step(cfg, back)
    for k in range(12):
        tokens, valid, response, _ = rollouts(state.params, 100 + k)
        state, m = pull(state, ref, tokens, valid, response, jnp.full((tokens.shape[0],), 0.5))
    assert drifted > 0.05
    assert exact_kl(state.params, ref, probe) < 0.5 * drifted


def test_a_kl_loss_with_no_gradient_is_refused_in_one_line():
    with pytest.raises(ValueError, match="zero expected gradient") as err:
        R.RLConfig.from_config(rl_section(kl_mode="loss", kl_estimator="k1"))
    assert "\n" not in str(err.value)
    R.RLConfig.from_config(rl_section(kl_mode="loss", kl_estimator="k3"))
    R.RLConfig.from_config(rl_section(kl_mode="reward", kl_estimator="k1"))
    with pytest.raises(ValueError, match="rl.kl_mode='bogus'"):
        R.RLConfig.from_config(rl_section(kl_mode="bogus"))


def _target_probability_after(step, state, ref, params, reward_of, steps=6, target=9):
    def prob_of_target(p):
        tokens, _, _, _ = rollouts(params, 123)
        return float(jax.nn.softmax(M.forward(CFG, p, tokens[:, :4])[:, -1])[:, target].mean())
    p0 = prob_of_target(params)
    for k in range(steps):
        tokens, valid, response, out = rollouts(state.params, k)
        grades = (np.asarray(out.tokens_BxN) == target).mean(1) * 10
        state, _ = step(state, ref, tokens, valid, response, jnp.asarray(reward_of(grades, k), jnp.float32))
    return p0, prob_of_target(state.params)


def _control_rewards(control: str):
    """A control run's rewards for grades g: 4.2·g on each criterion, so that the real reward is g + 0.04/1.4
    (9-word stories, bonus 0.4)."""
    reward = RW.RewardConfig((1, 1, 1), 0.4, 90.0, control)

    def rewards(grades, k):
        words = np.full(len(grades), 9.0)
        return RW.story_rewards(reward, np.repeat(np.asarray(grades)[:, None], 3, 1) * 4.2, words, seed=0,
                                step=k).reward_B
    return rewards


@pytest.mark.parametrize("control", ["grades_permuted", pytest.param("reward_permuted", marks=pytest.mark.slow)])
def test_permuted_controls_teach_nothing_where_the_real_grades_teach(control):
    """The same rollouts and grades, with the grades (or the whole reward) permuted within each batch: the
    rewarded token gains nothing, while the real grades make it several times likelier."""
    state, params, step = setup(baseline="ema")
    p0, real = _target_probability_after(step, state, jax.tree.map(jnp.copy, params), params,
                                         _control_rewards(""))
    state, params, step = setup(baseline="ema")  # the step donates its state: a fresh start, the same one
    _, permuted = _target_probability_after(step, state, jax.tree.map(jnp.copy, params), params,
                                            _control_rewards(control))
    assert real > 3 * p0 and permuted < 1.5 * p0


@pytest.mark.parametrize("control", ["grades_permuted", "reward_permuted"])
def test_permutations_keep_the_batch_and_its_unscorable_rows_and_replay_on_resume(control):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (32, 3)).astype(np.float32)
    scores[[3, 7]] = np.nan
    words = rng.integers(0, 120, 32).astype(np.float32)
    reward = RW.RewardConfig(control=control)
    real = RW.story_rewards(RW.RewardConfig(), scores, words)
    out = RW.story_rewards(reward, scores, words, seed=5, step=2)
    assert np.isnan(out.reward_B[[3, 7]]).all() and not np.isnan(np.delete(out.reward_B, [3, 7])).any()
    np.testing.assert_array_equal(out.teacher_B, real.teacher_B)  # the logs keep each story's own grades
    np.testing.assert_array_equal(out.reward_B, RW.story_rewards(reward, scores, words, seed=5, step=2).reward_B)
    assert not np.array_equal(out.reward_B, RW.story_rewards(reward, scores, words, seed=5, step=3).reward_B)
    if control == "reward_permuted":  # the batch's rewards, only moved between stories
        np.testing.assert_allclose(np.sort(np.delete(out.reward_B, [3, 7])), np.sort(np.delete(real.reward_B, [3, 7])))
    else:  # the batch's grades moved, each story's own length bonus kept
        own_bonus = out.reward_B * 1.4 - out.bonus_B
        np.testing.assert_allclose(np.sort(np.delete(own_bonus, [3, 7])), np.sort(np.delete(real.teacher_B, [3, 7])),
                                   atol=1e-6)
    # Over many batches a story's reward no longer follows its own grades.
    corr = []
    for k, s in enumerate(rng.integers(0, 4, (200, 32, 3)).astype(np.float32)):
        r = RW.story_rewards(reward, s, np.zeros(32), seed=0, step=k)
        corr.append(np.corrcoef(r.teacher_B, r.reward_B)[0, 1])
    assert abs(np.mean(corr)) < 0.03


def test_the_length_only_control_is_the_real_rewards_length_term():
    scores = np.asarray([[0, 0, 0], [3, 3, 3], [2, np.nan, 1]], np.float32)
    words = np.asarray([45, 120, 30], np.float32)
    out = RW.story_rewards(RW.RewardConfig((1, 1, 1), 0.4, 90.0, "length_only"), scores, words)
    # 0.4·min(w, 90)/90 / 1.4: the push the real reward's length term gives, not 3.5x it
    np.testing.assert_allclose(out.reward_B, [0.2 / 1.4, 0.4 / 1.4, np.nan], rtol=1e-6)
    real = RW.story_rewards(RW.RewardConfig((1, 1, 1), 0.4, 90.0), scores, words).reward_B
    np.testing.assert_allclose(real[:2] - out.reward_B[:2], [0.0, 1.0 / 1.4], rtol=1e-6, atol=1e-7)


def test_reward_settings_are_refused_with_the_fix():
    base = dict(weights=(1, 1, 1), length_bonus=0.4, length_norm=90, control="")
    for change, message in (({"control": "bogus"}, "reward.control='bogus'"),
                            ({"control": "random_reward"}, "renamed 'grades_permuted'"),
                            ({"control": "length_only", "length_bonus": 0.0}, "leaves none"),
                            ({"weights": (0, 0, 0)}, "reward.weights")):
        with pytest.raises(ValueError, match=message):
            RW.RewardConfig.from_config(ml_collections.ConfigDict({**base, **change}))
