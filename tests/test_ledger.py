import pytest

from storyjax import ledger as L


def test_milestone_names_are_words_with_k_and_m():
    assert L.milestone_name(2_000_000) == "chck_2M"
    assert L.milestone_name(500_000) == "chck_500K"
    assert L.milestone_name(1_000_000_000) == "chck_1000M"
    assert L.milestone_name(1_500_000) == "chck_1500K"
    assert L.milestone_name(1234) == "chck_1234"
    with pytest.raises(ValueError):
        L.milestone_name(0)


def test_babylm_schedule_matches_the_rules():
    names = [L.milestone_name(m) for m in L.BABYLM_MILESTONES]
    assert names[:10] == [f"chck_{i}M" for i in range(1, 10)] + ["chck_10M"]
    assert names[9:19] == [f"chck_{i}M" for i in range(10, 101, 10)]
    assert names[18:] == [f"chck_{i}M" for i in range(100, 1001, 100)]
    assert len(L.BABYLM_MILESTONES) == 28 and sorted(set(L.BABYLM_MILESTONES)) == L.BABYLM_MILESTONES


def test_words_epochs_and_due_milestones():
    led = L.PretrainCount(tokens_per_word=1.25, tokens_per_epoch=1_000_000, max_epochs=10)
    for _ in range(8):
        led.charge(100_000)
    assert led.tokens_seen == 800_000 and led.steps == 8
    assert led.words_seen == pytest.approx(640_000)
    assert led.epochs == pytest.approx(0.8)
    assert led.due_milestones([100_000, 500_000, 700_000]) == [100_000, 500_000]
    led.milestones_done.append(100_000)
    assert led.due_milestones([100_000, 500_000, 700_000]) == [500_000]
    assert L.PretrainCount.from_dict(led.to_dict()) == led


def test_epoch_cap_is_enforced_unless_lifted():
    led = L.PretrainCount(tokens_per_word=1.0, tokens_per_epoch=100, max_epochs=2)
    assert led.max_steps(30) == 6
    for _ in range(6):
        led.charge(30)
    with pytest.raises(RuntimeError, match="epoch cap"):
        led.charge(30)
    assert led.tokens_seen == 180  # the refused step was not counted
    lifted = L.PretrainCount(tokens_per_word=1.0, tokens_per_epoch=100, max_epochs=0)
    assert lifted.max_steps(30) is None
    for _ in range(20):
        lifted.charge(30)
    assert lifted.epochs == pytest.approx(6.0)


def test_paper_budget_gives_exactly_920_steps():
    led = L.dry_run(L.WordBudget(budget_words=1_000_000, prompt_words=16), batch=360)
    assert (led.steps, led.stories, led.input_words) == (920, 331_200, 999_360)
    assert led.input_words + led.batch_cost(360) == 1_000_440  # the refused batch


def test_interactive_charges_prompt_once_or_per_story_and_only_scored_answers():
    once = L.WordBudget(budget_words=10_000, prompt_words=16)
    once.charge(batch=10, scored=8, generated_words=500)
    once.charge(batch=10, scored=10, generated_words=400)
    assert once.input_words == 16 * 10 + 3 * 18 and once.unscorable == 2 and once.generated_words == 900
    per = L.WordBudget(budget_words=10_000, prompt_words=16, charge_prompt="per_story")
    per.charge(batch=10, scored=10, generated_words=0)
    per.charge(batch=10, scored=10, generated_words=0)
    assert per.input_words == 2 * (160 + 30)
    assert L.WordBudget.from_dict(once.to_dict()) == once


def test_interactive_budget_and_milestones():
    led = L.WordBudget(budget_words=100, prompt_words=3, milestone_every=40)
    with pytest.raises(ValueError, match="smaller than one batch"):
        L.WordBudget(budget_words=40, prompt_words=16).check_first_batch(10)
    led.charge(batch=10, scored=10, generated_words=0)  # 30 + 30 = 60 words
    assert led.due_milestones() == [40]
    led.milestones_done.append(40)
    assert led.can_afford(10) is True and led.batch_cost(10) == 30
    led.charge(batch=10, scored=10, generated_words=0)  # 90
    assert not led.can_afford(10) and led.due_milestones() == [80]
    capped = L.WordBudget(budget_words=100, prompt_words=1, generated_cap=50)
    with pytest.raises(RuntimeError, match="generated words"):
        capped.charge(batch=1, scored=1, generated_words=51)
