"""Preemption: SIGTERM / SIGINT to a real ``ganpipe run`` stop training after a step with a
checkpoint, exit 143 / 130 with one line naming it, and the same command resumes to the
bit-identical result of an uninterrupted run (one process, and ``devices = 2``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from _dist_helpers import (
    DP_STEPS,
    ENV,
    final,
    make,
    run,
    same,
    stage_entry,
    stop_after,
    stopped_step,
    train_dir,
)

from ganpipe import signals
from ganpipe.training import checkpoint as ckpt

STEPS = 200  # the signal comes at step 10 (two metrics lines)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    make(folder, STEPS)
    rc, out = run(folder)
    assert rc == 0, out
    return final(folder, STEPS)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_and_resumes_exactly(tmp_path, reference, signum, code):
    make(tmp_path, STEPS)
    rc, out = stop_after(tmp_path, [signum])
    assert rc == code, out
    name = signal.Signals(signum).name
    step = stopped_step(out, name, tmp_path)
    assert 0 < step < STEPS
    entry = stage_entry(tmp_path)
    assert entry["status"] == ("terminated" if name == "SIGTERM" else "interrupted")
    assert entry["signal"] == name
    # the metrics log holds every step up to the stop
    last = json.loads((train_dir(tmp_path) / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == step - step % 5
    rc, out = run(tmp_path)
    assert rc == 0, out
    assert "resuming from" in out and f"(step {step})" in out
    assert same(final(tmp_path, STEPS), reference)  # weights, optimizers, metrics log


@pytest.mark.slow
def test_second_sigterm_during_the_save_corrupts_nothing(tmp_path):
    make(tmp_path, STEPS)
    rc, out = stop_after(tmp_path, [signal.SIGTERM] * 3, gap=0.01)
    assert rc == 143, out
    step = stopped_step(out, "SIGTERM", tmp_path)
    path = train_dir(tmp_path) / "checkpoints" / f"step_{step:08d}"
    assert ckpt.latest_checkpoint(path.parent) == path
    assert int(ckpt.load_state(path)["step"]) == step
    assert ckpt.load_weights(path)  # complete, readable
    leftovers = [p for p in train_dir(tmp_path).rglob("*") if p.name.startswith(".")]
    assert not leftovers


@pytest.mark.slow
def test_data_parallel_processes_stop_together_and_resume_exactly(tmp_path, dp_reference):
    """``devices = 2``: SIGTERM to the parent only (the launcher passes it on)."""
    make(tmp_path, DP_STEPS, devices=2)
    rc, out = stop_after(tmp_path, [signal.SIGTERM])
    assert rc == 143, out
    step = stopped_step(out, "SIGTERM", tmp_path)
    state = ckpt.load_state(train_dir(tmp_path) / "checkpoints" / f"step_{step:08d}")
    assert len(state["rng_ranks"]) == 2  # both processes took part in it
    assert not list(train_dir(tmp_path).glob(".devices-*"))
    rc, out = run(tmp_path)
    assert rc == 0, out
    assert f"(step {step})" in out
    assert same(final(tmp_path, DP_STEPS), dp_reference)


def test_interrupted_names_the_signal_and_exit_code():
    term = signals.Interrupted(signal.SIGTERM, step=7, checkpoint="/nowhere/step_00000007")
    assert (term.exit_code, term.status, term.signal_name) == (143, "terminated", "SIGTERM")
    assert "at step 7; checkpoint /nowhere/step_00000007 written" in str(term)
    assert isinstance(term, KeyboardInterrupt)
    stop = signals.Interrupted(signal.SIGINT)
    assert (stop.exit_code, stop.status) == (130, "interrupted")
    assert "finished outputs and checkpoints are kept" in stop.message()


def test_deferred_records_and_hands_back_what_was_not_taken():
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    signal.signal(signal.SIGTERM, lambda s, _f: seen.append(s))
    try:
        with signals.deferred():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
            assert signals.requested() == signal.SIGTERM and not seen
        assert seen == [signal.SIGTERM]  # the previous handler got it, once, at the end
        with pytest.raises(signals.Interrupted), signals.deferred():
            signal.raise_signal(signal.SIGTERM)
            raise signals.Interrupted(signals.consume())
        assert seen == [signal.SIGTERM] and signals.requested() is None
    finally:
        signal.signal(signal.SIGTERM, before)


def test_raising_stops_another_stage_with_exit_143(tmp_path):
    """Outside training (export, evaluate, upscale...): the CLI's handler raises
    Interrupted in the main thread, so ``finally`` blocks run; the exit code is 143."""
    script = tmp_path / "stage.py"
    script.write_text(
        "import sys, time\n"
        "from ganpipe.cli.main import main\n"
        "import click\n"
        "@main.command('slow')\n"
        "def slow():\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        "        print('cleaned up', flush=True)\n"
        "main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), "slow"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "cleaned up" in out
    assert err.strip().splitlines()[-1] == (
        "ganpipe: stopped by SIGTERM; finished outputs and checkpoints are kept, "
        "run the same command to resume"
    )


def test_an_interrupted_tune_trial_is_not_counted_as_done():
    """tune: a signal during a trial fails that trial, marked, and stops the search; a
    re-run does another trial in its place (a ValueError counts as a finished trial)."""
    optuna = pytest.importorskip("optuna")
    from ganpipe.stages.tune import finished_trials, run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    logs: list[str] = []

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 1:
            raise ValueError("bad\nvalue")
        if trial.number == 2:
            raise signals.Interrupted(signal.SIGTERM, step=3, checkpoint="ckpt")
        return x

    run_trial(study, objective, logs.append)
    run_trial(study, objective, logs.append)
    assert logs == ["trial 1 failed: bad value"]
    with pytest.raises(signals.Interrupted):
        run_trial(study, objective, logs.append)
    assert [t.number for t in finished_trials(study)] == [0, 1]
    assert study.trials[2].user_attrs == {"interrupted": True}
