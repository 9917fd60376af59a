"""One writer per run folder, tune study or journal (:mod:`ganpipe.runlock`).

Real processes throughout: a ``ganpipe run`` held inside a stage by a gate file the test
controls (a plugin stage installed as a real distribution), a second ``ganpipe run`` on
the same folder that must refuse in one line naming the first and change nothing, a run
killed with SIGKILL whose lock must not block the next, and the lock module between two
processes (stale, re-entrant, symbolic links, other hosts, file locks).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_PIPELINE, write_toml
from test_plugins import assert_one_line_error, with_site, write_dist

from ganpipe import runlock
from ganpipe.errors import LockedError

#: a stage that records the run's seed; the first process to reach it says so (a file in
#: ``gate``) and waits there until the test creates ``gate/release``, later ones pass
GATE_PLUGIN = """
import os
import time
from pathlib import Path

import ganpipe


class HoldOptions(ganpipe.Options):
    gate: str


class HoldStage(ganpipe.Stage):
    name = "hold"
    description = "wait at a gate the test opens"
    Options = HoldOptions
    uses = ("seed",)

    def run(self, ctx, opts):
        gate = Path(opts.gate)
        out = ctx.stage_dir(self.name)
        (out / "seed.txt").write_text(str(ctx.config.run.seed))
        try:  # the first process to get here waits; any other passes
            os.close(os.open(gate / "first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return ganpipe.StageResult({"seed": "hold/seed.txt"}, "not first: passed")
        (gate / f"started-{os.getpid()}").write_text("")
        deadline = time.monotonic() + 120
        while not (gate / "release").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the test never opened the gate")
            time.sleep(0.02)
        return ganpipe.StageResult({"seed": "hold/seed.txt"}, "gate opened")


@ganpipe.hookimpl
def ganpipe_register_stages(register):
    register(HoldStage())
"""


@pytest.fixture
def gate_site(tmp_path, monkeypatch):
    """(environment with the gate plugin installed, the gate folder)."""
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)
    site = write_dist(
        tmp_path / "site",
        "ganpipe-locktest",
        "0.1.0",
        {"ganpipe_locktest": GATE_PLUGIN},
        {"locktest": "ganpipe_locktest"},
    )
    gate = tmp_path / "gate"
    gate.mkdir()
    return with_site(site), gate


def start_cli(*args: str, cwd: Path, env: dict) -> subprocess.Popen:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "ganpipe", *args],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_started(gate: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``proc`` waits at the gate (fails at once if it ended)."""
    deadline = time.monotonic() + timeout
    while not (gate / f"started-{proc.pid}").exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the first run ended early ({proc.returncode}):\n{out}\n{err}")
        assert time.monotonic() < deadline, "the first run never reached the gate"
        time.sleep(0.05)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (hidden ones too): kind, size, mtime, content hash."""
    found = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        found[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return found


def gated_pipeline(folder: Path, gate: Path, seed: int, train: bool = True) -> Path:
    """A tiny pipeline (train, then the gate, then export and generate) or the gate alone."""
    if train:
        text = TINY_PIPELINE.format(variant="dcgan", steps=4)
        text = text.replace("seed = 0", f"seed = {seed}")
        text = text.replace("[export]", f'[hold]\ngate = "{gate.as_posix()}"\n\n[export]')
    else:
        text = f'[run]\nname = "tiny"\nout_dir = "runs"\nseed = {seed}\n\n'
        text += f'[hold]\ngate = "{gate.as_posix()}"\n'
    return write_toml(folder / f"seed{seed}.toml", text)


# -- two `ganpipe run` on one run folder ---------------------------------------------------
def test_second_run_on_a_busy_run_folder_refuses_naming_the_first(tmp_path, gate_site, cli):
    env, gate = gate_site
    first_toml = gated_pipeline(tmp_path, gate, seed=0)
    other_toml = gated_pipeline(tmp_path, gate, seed=1)  # same run name, another seed
    first = start_cli("run", str(first_toml), cwd=tmp_path, env=env)
    try:
        wait_started(gate, first)
        run_dir = tmp_path / "runs" / "tiny"
        before = snapshot(run_dir)
        for args in (["run", str(other_toml)], ["run", "--force", str(first_toml)]):
            second = cli(*args, cwd=tmp_path, env=env)
            line = assert_one_line_error(
                second,
                "run folder runs/tiny is in use by ganpipe",
                f"pid {first.pid} on host {runlock.HOST} since ",
                f"(ganpipe run {first_toml})",
                "wait for it to finish or stop it",
                code=1,
            )
            assert "took over" not in second.stdout + line
            assert snapshot(run_dir) == before  # not the manifest, copy, metrics or lock
        held = runlock.read_holder(run_dir / runlock.LOCK_NAME)
        assert held is not None and held.pid == first.pid and held.host == runlock.HOST
        assert runlock.current(run_dir) == held  # what a reader can tell
        report = cli("report", str(run_dir), cwd=tmp_path)  # readers take no lock
        assert report.returncode == 0, report.stderr
        (gate / "release").write_text("")
        out, err = first.communicate(timeout=300)
    finally:
        (gate / "release").write_text("")
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, (out, err)
    # the first run's folder is whole: its own config, one run's metrics, a manifest that loads
    assert "seed = 0" in (run_dir / "pipeline.toml").read_text()
    assert (run_dir / "hold" / "seed.txt").read_text() == "0"
    steps = [json.loads(line)["step"] for line in (run_dir / "train" / "metrics.jsonl").open()]
    assert steps == [2, 4]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {k: v["status"] for k, v in manifest["stages"].items()} == dict.fromkeys(
        ("train", "hold", "export", "generate"), "done"
    )
    assert not (run_dir / runlock.LOCK_NAME).exists()  # let go at the end
    again = cli("run", str(first_toml), cwd=tmp_path, env=env)  # up to date, not locked out
    assert again.returncode == 0, again.stderr
    assert "up to date, skipped" in again.stdout


def test_a_killed_runs_lock_does_not_block_the_next(tmp_path, gate_site, cli):
    env, gate = gate_site
    toml = gated_pipeline(tmp_path, gate, seed=0, train=False)
    first = start_cli("run", str(toml), cwd=tmp_path, env=env)
    try:
        wait_started(gate, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    lock_file = tmp_path / "runs" / "tiny" / runlock.LOCK_NAME
    left = runlock.read_holder(lock_file)
    assert left is not None and left.pid == first.pid  # left behind by the kill
    assert runlock.current(lock_file.parent) is None  # a reader sees nobody holds it
    (gate / "release").write_text("")
    second = cli("run", str(toml), cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    said = [line for line in second.stdout.splitlines() if "took over the lock" in line]
    assert len(said) == 1, second.stdout
    assert f"left by ganpipe pid {first.pid} on host {runlock.HOST}" in said[0]
    assert "which no longer runs" in said[0]
    assert not lock_file.exists()


@pytest.mark.slow
def test_torchrun_on_a_busy_run_folder_stops_every_process(tmp_path):
    """Under torchrun process 0 alone takes the lock; refused, it tells the others, which
    stop too instead of waiting for its word (no deadlock), and nothing is written."""
    from _dist_helpers import finish, make, start, torchrun

    make(tmp_path, 4)
    run_dir = tmp_path / "runs" / "tiny"
    with runlock.hold(run_dir, command="ganpipe run busy.toml"):
        proc = start(tmp_path, torchrun("--standalone", "--nproc-per-node", "2"))
        code, out = finish(proc, timeout=180)
    assert code != 0, out
    assert f"run folder runs/tiny is in use by ganpipe pid {os.getpid()}" in out
    assert "(ganpipe run busy.toml)" in out
    assert "process 0 stopped before training: run folder" in out  # process 1 heard it
    assert sorted(p.name for p in run_dir.iterdir()) == []


def test_tune_study_in_use_refuses(tmp_path, cli):
    pytest.importorskip("optuna")
    from test_tune import GAN, SPACE

    toml = write_toml(tmp_path / "pipeline.toml", GAN.format(trials=2, space=SPACE))
    study = tmp_path / "runs" / "t" / "tune"
    with runlock.hold(study, "tune study", command="ganpipe tune-holder"):
        proc = cli("--no-plugins", "run", str(toml), cwd=tmp_path)
    assert_one_line_error(
        proc,
        "tune study runs/t/tune is in use by ganpipe",
        f"pid {os.getpid()} on host {runlock.HOST}",
        "(ganpipe tune-holder)",
        code=1,
    )
    assert not (study / "study.db").exists()
    assert not (study / runlock.LOCK_NAME).exists()


# -- the lock module between processes -----------------------------------------------------
HOLDER = """
import sys
from ganpipe import runlock
hold = runlock.hold_file if sys.argv[2] == "file" else runlock.hold
with hold(sys.argv[1], "test folder", command="holder at work"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def attempt(target: Path) -> str:
    """What another process gets when it tries to hold ``target``'s lock: "held" or the
    error's one line."""
    code = (
        "from ganpipe import runlock\nfrom ganpipe.errors import LockedError\n"
        f"try:\n    with runlock.hold({str(target)!r}):\n        print('held')\n"
        "except LockedError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def holder():
    """Starts a process that holds a lock until the test ends (or it is killed)."""
    procs: list[subprocess.Popen] = []

    def start(target: Path, kind: str = "folder") -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(target), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_lock_held_by_another_process_refuses_then_frees(tmp_path, holder):
    folder = tmp_path / "busy"
    other = holder(folder)
    with pytest.raises(LockedError) as caught:
        with runlock.hold(folder, "test folder"):
            pass
    assert caught.value.holder is not None and caught.value.holder.pid == other.pid
    message = str(caught.value)
    assert "\n" not in message
    assert f"is in use by ganpipe pid {other.pid} on host {runlock.HOST}" in message
    assert "(holder at work)" in message
    other.communicate("\n")  # lets go and deletes its lock file
    assert not (folder / runlock.LOCK_NAME).exists()
    with runlock.hold(folder, "test folder") as lock:
        assert lock.took_over is None
        assert runlock.current(folder).pid == os.getpid()


def test_lock_is_reentrant_in_one_process(tmp_path, holder):
    folder = tmp_path / "mine"
    with runlock.hold(folder) as outer:
        with runlock.hold(folder) as inner:
            assert inner is outer
        assert (folder / runlock.LOCK_NAME).exists()  # still held by the outer block
        assert f"in use by ganpipe pid {os.getpid()}" in attempt(folder)  # not by others
    assert not (folder / runlock.LOCK_NAME).exists()


def test_stale_lock_of_a_killed_process_is_taken_over_once(tmp_path, holder):
    folder = tmp_path / "stale"
    dead = holder(folder)
    dead.kill()
    dead.wait()
    heard: list[str] = []
    with runlock.hold(folder, "test folder", log=heard.append) as lock:
        assert lock.took_over is not None and lock.took_over.pid == dead.pid
        assert runlock.read_holder(lock.path).pid == os.getpid()
    assert len(heard) == 1 and f"ganpipe pid {dead.pid}" in heard[0]


def test_lock_of_another_host_counts_while_fresh(tmp_path):
    """Where flock cannot see another host (NFS without locks), its lock counts while the
    holder refreshes it, and is stale after :data:`runlock.OTHER_HOST_STALE_S`."""
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / runlock.LOCK_NAME
    far = runlock.Holder(4242, "elsewhere.example", time.time() - 60, "ganpipe run p.toml")
    path.write_bytes(far.record())
    with pytest.raises(LockedError) as caught:
        with runlock.hold(folder):
            pass
    message = str(caught.value)
    assert "ganpipe pid 4242 on host elsewhere.example" in message
    assert f"if it no longer runs, delete {path}" in message
    assert runlock.read_holder(path) == far  # untouched
    old = time.time() - runlock.OTHER_HOST_STALE_S - 60
    os.utime(path, (old, old))
    with runlock.hold(folder) as lock:
        assert lock.took_over == far


def test_lock_file_planted_as_a_symlink_is_refused(tmp_path):
    folder = tmp_path / "planted"
    folder.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (folder / runlock.LOCK_NAME).symlink_to(precious)
    with pytest.raises(LockedError, match="is a symbolic link; remove it"):
        with runlock.hold(folder):
            pass
    assert precious.read_text() == "keep me"


def test_file_lock_next_to_a_journal(tmp_path, holder):
    report = tmp_path / "r.jsonl"
    assert runlock.file_lock_path(report) == tmp_path / ".r.jsonl.lock"
    other = holder(report, "file")
    with pytest.raises(LockedError, match=f"report journal .* in use by ganpipe pid {other.pid}"):
        with runlock.hold_file(report):
            pass
    assert not report.exists()  # the journal itself is never opened by the lock
    other.communicate("\n")
    with runlock.hold_file(report) as lock:
        assert lock.path == tmp_path / ".r.jsonl.lock"
    long = tmp_path / ("é" * 122 + ".jsonl")  # 250 bytes: its lock name is shortened
    with runlock.hold_file(long) as lock:
        assert len(os.fsencode(lock.path.name)) <= 255
