"""End-to-end runs of `python -m storyjax.main` on real prose, as a user runs it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}


def base_args(austen_dir, tfds_dir, **overrides):
    settings = {
        "data.name": "text_files", "data.path": str(austen_dir), "data.tfds_dir": tfds_dir,
        "model.num_layers": 2, "model.d_model": 64, "model.num_heads": 2, "model.max_len": 64,
        "tokenizer.vocab_size": 1000, "train.batch_size": 16, "train.num_steps": 60,
        "checkpoint.every_steps": 5, "ledger.milestones": "(10000,20000,30000)",
        "progress_bar": False, "eval_rows": 16, "log_every": 5,
    }
    settings.update(overrides)
    return ["--config=configs/pretrain.py:tiny"] + [f"--config.{k}={v}" for k, v in settings.items()]


def run_main(args, workdir, **kw):
    return subprocess.run([sys.executable, "-m", "storyjax.main", *args, f"--workdir={workdir}"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600, **kw)


def start_main(args, workdir):
    return subprocess.Popen([sys.executable, "-m", "storyjax.main", *args, f"--workdir={workdir}"],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def summary(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


def checkpoint_steps(workdir):
    latest = os.path.join(workdir, "latest")
    return sorted(int(d) for d in os.listdir(latest) if d.isdigit()) if os.path.isdir(latest) else []


def wait_for_checkpoint(workdir, proc, at_least):
    deadline = time.time() + 300
    while time.time() < deadline:
        steps = checkpoint_steps(workdir)
        if steps and steps[-1] >= at_least:
            return steps[-1]
        assert proc.poll() is None, f"run ended before a checkpoint at step {at_least}: {proc.stderr.read()[-3000:]}"
        time.sleep(0.02)
    raise TimeoutError("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference_run(austen_dir, tfds_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ref")
    proc = run_main(base_args(austen_dir, tfds_dir), workdir)
    assert proc.returncode == 0, proc.stderr[-5000:]
    (workdir / "stdout.txt").write_text(proc.stdout)
    return workdir


def test_pretraining_on_austen_learns_and_writes_named_milestones(reference_run):
    s = summary(reference_run)
    assert s["steps"] == 60 and s["tokens"] == 60 * 16 * 64
    assert 1.5 < s["tokens_per_word"] < 2.5  # a 1000-piece BPE on Austen: ~2 tokens per word
    assert s["words"] == pytest.approx(s["tokens"] / s["tokens_per_word"])
    assert s["loss_first"] > 6.5  # ≈ ln(1000) at init
    assert s["loss_last"] < s["loss_first"] - 1.0
    assert s["val_loss"] < s["loss_first"] - 0.75  # held-out tails of the novels
    assert s["checkpoints"] == ["chck_10K", "chck_20K", "chck_30K"]
    for name in s["checkpoints"]:
        assert os.path.isdir(reference_run / "milestones" / name / "state")
    closing = (reference_run / "stdout.txt").read_text().strip().splitlines()[-2:]  # the job ends in words
    assert closing[0].startswith(f"Pretrained {s['num_params']:,} parameters for 60 steps") and \
        "milestones/ (chck_10K, chck_20K, chck_30K)" in closing[1]
    events = [json.loads(line) for line in open(reference_run / "ledger.jsonl")]
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    milestones = [e for e in events if e["event"] == "milestone"]
    assert [e["name"] for e in milestones] == s["checkpoints"]
    assert all(e["words_seen"] >= w for e, w in zip(milestones, (10_000, 20_000, 30_000)))
    assert os.listdir(reference_run / "tensorboard")
    assert (reference_run / "tokenizer" / "spm.model").exists()
    evals = [json.loads(line) for line in open(reference_run / "milestone_eval.jsonl")]
    assert [e["name"] for e in evals] == s["checkpoints"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] < s["loss_first"]


def test_sigkill_midway_then_rerun_gives_bit_identical_params(reference_run, austen_dir, tfds_dir, tmp_path):
    args = base_args(austen_dir, tfds_dir)
    proc = start_main(args, tmp_path)
    killed_after = wait_for_checkpoint(tmp_path, proc, 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed_after < 60 and not (tmp_path / "summary.json").exists()
    rerun = run_main(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    resumed, ref = summary(tmp_path), summary(reference_run)
    assert resumed["param_checksum"] == ref["param_checksum"]
    assert resumed["checkpoints"] == ref["checkpoints"]
    assert resumed["words"] == ref["words"] and resumed["loss_first"] == ref["loss_first"]
    events = [json.loads(line)["event"] for line in open(tmp_path / "ledger.jsonl")]
    assert "resume" in events


def test_sigterm_checkpoints_before_exit_and_resume_matches(reference_run, austen_dir, tfds_dir, tmp_path):
    args = base_args(austen_dir, tfds_dir)
    proc = start_main(args, tmp_path)
    wait_for_checkpoint(tmp_path, proc, 5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "rerun the same command to resume" in err
    events = [json.loads(line) for line in open(tmp_path / "ledger.jsonl")]
    assert events[-1]["event"] == "preempted"
    assert checkpoint_steps(tmp_path)[-1] == events[-1]["step"]  # the state at the signal was saved
    rerun = run_main(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    assert summary(tmp_path)["param_checksum"] == summary(reference_run)["param_checksum"]


@pytest.mark.slow
def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(austen_dir, tfds_dir, tmp_path):
    first = run_main(base_args(austen_dir, tfds_dir, **{"train.num_steps": 10}), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    good = summary(tmp_path)["param_checksum"]
    # Same workdir, longer run with an absurd learning rate and a checkpoint every step: resumes at step 10,
    # step 11 leaves finite but huge (~1e37) parameters, step 12's loss on them is not finite.
    blowup = run_main(base_args(austen_dir, tfds_dir, **{"train.num_steps": 40, "train.lr": 1e37,
                                                          "checkpoint.every_steps": 1}), tmp_path)
    assert blowup.returncode == 1, blowup.stderr[-3000:]
    line = next(l for l in blowup.stderr.splitlines() if l.startswith("storyjax: stopped: "))
    assert "non-finite loss at step 12" in line and "Checkpoints from step 11 on were moved" in line
    assert "the last good checkpoint is step 10" in line and "Lower --config.train.lr" in line
    assert "Traceback" not in blowup.stderr
    assert checkpoint_steps(tmp_path)[-1] == 10
    assert summary(tmp_path)["param_checksum"] == good  # nothing written was lost or overwritten
    # The advice works: a sane learning rate resumes from step 10 and finishes.
    rerun = run_main(base_args(austen_dir, tfds_dir, **{"train.num_steps": 40}), tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    s = summary(tmp_path)
    assert s["steps"] == 40 and s["loss_last"] < s["loss_first"]
    events = [json.loads(line)["event"] for line in open(tmp_path / "ledger.jsonl")]
    assert events.count("resume") == 2


@pytest.mark.slow
def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(reference_run, austen_dir, tfds_dir,
                                                                      tmp_path):
    proc = start_main(base_args(austen_dir, tfds_dir), tmp_path)
    wait_for_checkpoint(tmp_path, proc, 15)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = checkpoint_steps(tmp_path)[-1]
    for root, _, files in os.walk(tmp_path / "latest" / str(newest) / "state"):
        for f in files:  # a disk fault: every file of its arrays cut to a few bytes
            with open(os.path.join(root, f), "r+b") as fh:
                fh.truncate(3)
    rerun = run_main(base_args(austen_dir, tfds_dir), tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    warned = [l for l in rerun.stderr.splitlines() if f"Checkpoint latest/{newest} does not restore" in l]
    assert len(warned) == 1 and "trying the one before it" in warned[0]
    assert "Event loop is closed" not in rerun.stderr and "Traceback" not in rerun.stderr
    assert any(n.startswith(f"unreadable_{newest}_") for n in os.listdir(tmp_path / "set_aside"))
    assert summary(tmp_path)["param_checksum"] == summary(reference_run)["param_checksum"]


def test_a_changed_corpus_is_refused_before_any_work(reference_run, austen_dir, tfds_dir, tmp_path):
    other = tmp_path / "corpus"
    other.mkdir()
    for f in sorted(austen_dir.glob("*.txt"))[:2]:
        (other / f.name).write_text(f.read_text())
    before = sorted(os.listdir(reference_run / "tokens"))
    proc = run_main(base_args(austen_dir, tfds_dir, **{"data.path": other}), reference_run)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = next(l for l in proc.stderr.splitlines() if l.startswith("storyjax: refused: "))
    assert "holds a different run (data_source:" in line and str(other) in line and str(austen_dir) in line
    assert sorted(os.listdir(reference_run / "tokens")) == before


@pytest.mark.parametrize("override, message", [
    ({"train.batch_size": 0}, "train.batch_size=0: give at least 1 block per step"),
    ({"train.batch_size": -16}, "train.batch_size=-16: give at least 1 block per step"),
    ({"train.lr": -1.0}, "train.lr=-1.0: use a positive learning rate"),
])
def test_settings_no_run_can_use_are_one_line_and_touch_nothing(austen_dir, tfds_dir, tmp_path, override, message):
    proc = run_main(base_args(austen_dir, tfds_dir, **override), tmp_path / "w")
    assert proc.returncode == 2 and f"storyjax: refused: {message}" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_a_corpus_too_small_to_split_says_how_to_fix_it(tfds_dir, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "one.txt").write_text("Once upon a time a fox found a key and opened a door to a garden.\n")
    proc = run_main(base_args(corpus, tfds_dir), tmp_path / "w")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "gives the validation split no text (1 paragraph(s) in 1 file(s)" in proc.stderr
    assert "--config.data.validation_files" in proc.stderr and "No examples were yielded" not in proc.stderr


@pytest.mark.parametrize("override, message", [
    ({"train.bogus": 1}, "no key 'bogus' at train; keys there"),
    ({"train.batch_size": "'sixteen'"}, "batch_size"),
    ({"train.batch_size": 12}, "train.batch_size=12 must be divisible by devices"),
    ({"data.path": "/nonexistent/corpus"}, "is not a directory"),
    ({"ledger.max_epochs": 0.01}, "epoch cap"),
])
def test_bad_config_is_refused_with_the_cause_and_the_fix(austen_dir, tfds_dir, tmp_path, override, message):
    proc = run_main(base_args(austen_dir, tfds_dir, **override), tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-3000:]


def test_workdir_of_another_model_is_refused_untouched(reference_run, austen_dir, tfds_dir):
    def files():  # the lock file records who held the workdir last: the only file a refused run writes
        return {p: os.path.getmtime(os.path.join(dp, p)) for dp, _, fs in os.walk(reference_run) for p in fs
                if p != ".lock"}
    before = files()
    proc = run_main(base_args(austen_dir, tfds_dir, **{"model.d_model": 32}), reference_run)
    assert proc.returncode != 0
    assert "holds a different run" in proc.stderr and "d_model" in proc.stderr
    after = files()
    assert before == after
    proc = run_main(base_args(austen_dir, tfds_dir, **{"tokenizer.vocab_size": 900}), reference_run)
    assert proc.returncode != 0 and "tokenizer of vocab 1000" in proc.stderr


def test_rerunning_a_finished_run_changes_nothing(reference_run, austen_dir, tfds_dir):
    before = summary(reference_run)
    proc = run_main(base_args(austen_dir, tfds_dir), reference_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = summary(reference_run)
    assert after == before


def test_evaluate_writes_blimp_per_paradigm_and_perplexity(reference_run, austen_dir, tfds_dir, tmp_path):
    from conftest import BLIMP
    args = ["--config=configs/evaluate.py", f"--config.checkpoint={reference_run}/milestones/chck_30K",
            f"--config.blimp_dir={BLIMP}", "--config.data.name=text_files", f"--config.data.path={austen_dir}",
            f"--config.data.tfds_dir={tfds_dir}", "--config.max_val_blocks=32", "--config.stories.num_openings=0"]
    proc = run_main(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    blimp = json.load(open(tmp_path / "eval" / "blimp.json"))
    paradigms = sorted(p.stem for p in BLIMP.glob("*.jsonl"))
    assert sorted(k for k in blimp if k != "overall") == paradigms and len(paradigms) == 10
    assert all(0.0 <= v <= 1.0 for v in blimp.values())
    assert blimp["overall"] > 0.55  # 10,000 pairs; chance is 0.5
    ppl = json.load(open(tmp_path / "eval" / "perplexity.json"))
    assert 1 < ppl["ppl_per_token"] < 1000 and ppl["ppl_per_word"] > ppl["ppl_per_token"]
    bad = run_main(["--config=configs/evaluate.py", "--config.checkpoint=/nonexistent"], tmp_path / "x")
    assert bad.returncode != 0 and "holds no storyjax run" in bad.stderr


@pytest.mark.slow
def test_export_cli_then_transformers_logits_and_the_export_evaluates_like_the_checkpoint(
        reference_run, austen_dir, tfds_dir, tmp_path):
    import numpy as np
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from conftest import BLIMP
    milestone = f"{reference_run}/milestones/chck_30K"
    proc = subprocess.run([sys.executable, "-m", "storyjax.export", f"--checkpoint={milestone}",
                           f"--out={tmp_path / 'hf'}"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = subprocess.run([sys.executable, "-m", "storyjax.export", f"--checkpoint={milestone}",
                            f"--out={tmp_path / 'hf'}"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already exists" in again.stderr

    from storyjax import model
    from storyjax import student as student_lib
    cfg, params, tok = student_lib.from_run(milestone)[:3]
    text = (austen_dir / "persuasion.txt").read_text()[50_000:52_000]
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = [tok.eos_id] + hf_tok(text)["input_ids"][:63]
    assert ids[1:] == tok.encode([text])[0][:63]
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        got = hf_model(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(got, np.asarray(model.forward(cfg, params, np.asarray([ids], np.int32))), atol=1e-4)

    # The evaluation pipeline sees the same student through the export: identical BLiMP accuracies.
    blimp = tmp_path / "blimp"
    blimp.mkdir()
    for f in sorted(BLIMP.glob("*.jsonl"))[:2]:
        (blimp / f.name).write_text(f.read_text())
    common = [f"--config.blimp_dir={blimp}", "--config.perplexity=False", "--config.stories.num_openings=0"]
    results = []
    for student in (f"--config.checkpoint={milestone}", f"--config.init_from_hf={tmp_path / 'hf'}"):
        proc = run_main(["--config=configs/evaluate.py", student, *common], tmp_path / student[9:20])
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(json.load(open(tmp_path / student[9:20] / "eval" / "blimp.json")))
    assert results[0] == results[1] and len(results[0]) == 3


def test_pretraining_continues_from_a_transformers_folder_and_exports_milestones(
        reference_run, austen_dir, tfds_dir, tmp_path):
    pytest.importorskip("transformers")
    from conftest import BLIMP
    from storyjax import export
    export.export_checkpoint(str(reference_run), str(tmp_path / "hf"))
    blimp = tmp_path / "blimp"
    blimp.mkdir()
    paradigm = sorted(BLIMP.glob("*.jsonl"))[0]
    (blimp / paradigm.name).write_text(paradigm.read_text())
    args = base_args(austen_dir, tfds_dir, **{"train.num_steps": 10, "init_from_hf": tmp_path / "hf",
                                              "export_hf": True, "ledger.milestones": "(5000,)",
                                              "milestone_eval.blimp_dir": blimp,
                                              "model.num_layers": 7})  # ignored: the folder gives the shape
    proc = run_main(args, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s, ref = summary(tmp_path / "run"), summary(reference_run)
    assert s["num_params"] == ref["num_params"]
    assert s["loss_first"] < ref["loss_last"] + 0.5  # starts where the reference ended, not at ln(1000)
    assert (tmp_path / "run" / "tokenizer" / "hf_tokenizer.json").exists()
    assert not (tmp_path / "run" / "tokenizer" / "spm.model").exists()
    assert sorted(os.listdir(tmp_path / "run" / "hf" / "chck_5K")) == sorted(os.listdir(tmp_path / "hf"))
    [record] = [json.loads(line) for line in open(tmp_path / "run" / "milestone_eval.jsonl")]
    assert record["name"] == "chck_5K" and set(record["blimp"]) == {paradigm.stem, "overall"}
    assert 0 < record["blimp_overall"] < 1 and record["val_loss"] < ref["loss_first"]
