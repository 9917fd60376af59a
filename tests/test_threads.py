"""Thread pools sized for the CPUs this process may use (:mod:`ganpipe.cpus`): cgroup v1 /
v2 quotas read from real files, the affinity set, ``--threads`` / ``[run] threads``, and
the pools that take the count (ONNX Runtime, OpenVINO, torch training), in this process
and in real subprocesses pinned to one CPU or put in a real cgroup with a quota."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_toml
from test_hardening import nearest_x2

from ganpipe import cpus
from ganpipe.config import load_config
from ganpipe.errors import ConfigError
from ganpipe.inference.ortlog import session_options
from ganpipe.inference.session import open_model
from ganpipe.registry import load_registry
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.upscale.options import UpscaleOptions
from ganpipe.variants.dcgan import DCGAN, DCGANOptions

AFFINITY = len(os.sched_getaffinity(0))
ROOT = Path(__file__).resolve().parent.parent


def files(root: Path, tree: dict[str, str]) -> Path:
    for rel, text in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def v2_tree(root: Path, leaf: str, parent: str | None) -> Path:
    """A cgroup v2 mount with this process in /user.slice/job: ``leaf`` and ``parent`` are
    the ``cpu.max`` of the job and of user.slice (None: no file)."""
    base = "sys/fs/cgroup"
    tree = {
        "proc/self/cgroup": "0::/user.slice/job\n",
        "proc/self/mountinfo": "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
        f"{base}/cgroup.controllers": "cpu io memory\n",
        f"{base}/cgroup.procs": "",
        f"{base}/user.slice/cgroup.procs": "",
        f"{base}/user.slice/job/cgroup.procs": "",
        f"{base}/user.slice/job/cpu.max": leaf,
    }
    if parent is not None:
        tree[f"{base}/user.slice/cpu.max"] = parent
    return files(root, tree)


# -- cgroup files -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("leaf", "parent", "expected"),
    [
        ("150000 100000\n", "max 100000\n", 1.5),
        ("max 100000\n", "50000 100000\n", 0.5),  # the parent's limit binds the child
        ("400000 100000\n", "200000 100000\n", 2.0),
        ("max 100000\n", None, None),
        ("max\n", None, None),
        ("", None, None),
        ("lots of cpu\n", "0 100000\n", None),
        ("100000 0\n", None, None),
    ],
)
def test_cgroup_v2_cpu_max_smallest_on_the_way_up(tmp_path, leaf, parent, expected):
    assert cpus.cgroup_cpu_limit(v2_tree(tmp_path, leaf, parent)) == expected


def test_cgroup_v1_container_view_and_hybrid_mounts(tmp_path):
    # a container without a cgroup namespace: /proc/self/cgroup names the host's path, the
    # mount shows the container's own cgroup as its root (mountinfo's 4th field)
    root = files(
        tmp_path / "docker",
        {
            "proc/self/cgroup": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
            "proc/self/mountinfo": (
                "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
                "35 31 0:32 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup "
                "rw,cpu,cpuacct\n"
                "36 31 0:33 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
            ),
            "sys/fs/cgroup/cpu,cpuacct/cgroup.procs": "",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/memory/cpu.cfs_quota_us": "1000\n",  # not the cpu hierarchy
        },
    )
    assert cpus.cgroup_cpu_limit(root) == 2.5
    # no mountinfo: the usual places; a nested cgroup under an unlimited root
    root = files(
        tmp_path / "plain",
        {
            "proc/self/cgroup": "3:cpu:/batch/job7\n",
            "sys/fs/cgroup/cpu/cgroup.procs": "",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/cpu/batch/cgroup.procs": "",
            "sys/fs/cgroup/cpu/batch/job7/cgroup.procs": "",
            "sys/fs/cgroup/cpu/batch/job7/cpu.cfs_quota_us": "50000\n",
            "sys/fs/cgroup/cpu/batch/job7/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpus.cgroup_cpu_limit(root) == 0.5


@pytest.mark.parametrize(
    "tree",
    [
        {},  # no /proc at all (not Linux)
        {"proc/self/cgroup": ""},
        {"proc/self/cgroup": "garbage without colons\n\x00\x01"},
        {"proc/self/cgroup": "3:cpu:/job\n"},  # no cgroup file system mounted
        {
            "proc/self/cgroup": "3:cpu:/\n",
            "sys/fs/cgroup/cpu/cgroup.procs": "",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "not a number\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        },
    ],
)
def test_no_or_unreadable_cgroup_is_no_limit(tmp_path, tree):
    root = files(tmp_path, tree)
    assert cpus.cgroup_cpu_limit(root) is None
    assert cpus.usable_cpus(root) == AFFINITY


@pytest.mark.parametrize(("quota", "expected"), [("50000", 1), ("150000", 2), ("9900000", 99)])
def test_usable_cpus_rounds_the_quota_up_within_the_affinity_set(tmp_path, quota, expected):
    root = files(
        tmp_path,
        {
            "proc/self/cgroup": "3:cpu:/\n",
            "sys/fs/cgroup/cpu/cgroup.procs": "",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": quota,
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
        },
    )
    assert cpus.usable_cpus(root) == min(AFFINITY, expected)


def test_hyperthreads_of_one_core_count_once(tmp_path):
    mine = sorted(os.sched_getaffinity(0))
    siblings = ",".join(map(str, mine))  # as if every CPU we have were one core's threads
    tree = {f"sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list": siblings for c in mine}
    assert cpus.usable_cores(files(tmp_path, tree)) == 1
    assert cpus.usable_cores(tmp_path / "nothing") == AFFINITY  # no topology: the CPUs


# -- the counts ------------------------------------------------------------------------------
def test_threads_for_requested_share_and_blocks():
    assert cpus.threads_for(7) == 7  # asked: taken as it is
    assert cpus.threads_for(share=AFFINITY * 4) == 1
    assert cpus.threads_for(share=1, root="/nonexistent") == AFFINITY
    with cpus.limits(5):
        assert cpus.threads_for() == 5
        with cpus.limits(0, share=2):  # 0 keeps the enclosing request
            assert cpus.current() == cpus.Limits(5, 2)
            assert cpus.threads_for(3) == 3
    assert cpus.current() == cpus.AUTOMATIC
    with cpus.limits(share=AFFINITY * 2):
        assert cpus.workers_for() == 1 and cpus.workers_for(6) == 6
    assert cpus.workers_for(cap=1) == 1
    for bad in ({"requested": -1}, {"share": -2}):
        with pytest.raises(ValueError, match="expected"):
            cpus.threads_for(**bad)


def test_a_busy_machine_makes_openmp_threads_sleep_not_the_count_drop(tmp_path):
    # /proc/stat's procs_running: 40 runnable tasks -> none of our CPUs is idle
    busy = files(tmp_path / "busy", {"proc/stat": "cpu  1 2 3\nprocs_running 40\n"})
    quiet = files(tmp_path / "quiet", {"proc/stat": "cpu  1 2 3\nprocs_running 1\n"})
    assert cpus.busy_cpus(busy) == 39 and cpus.busy_cpus(quiet) == 0
    assert cpus.busy_cpus(tmp_path / "no-proc") >= 0  # the load average instead
    assert cpus.threads_for(root=busy) == cpus.threads_for(root=quiet)  # reproducible
    assert cpus.machine_busy(2, root=busy) and not cpus.machine_busy(2, root=quiet)
    assert not cpus.machine_busy(1, root=busy)  # one thread waits for nobody
    # one other running task: fewer idle CPUs than a thread per CPU needs
    one = files(tmp_path / "one", {"proc/stat": "procs_running 2\n"})
    assert cpus.machine_busy(os.cpu_count() or 1, root=one) == ((os.cpu_count() or 1) > 1)
    env: dict[str, str] = {}
    assert cpus.spin_less_when_busy(env, quiet) is False and env == {}
    if cpus.threads_for() > 1:
        assert cpus.spin_less_when_busy(env, busy) is True
        assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    mine = {"GOMP_SPINCOUNT": "1000"}  # the user's own policy stays
    assert cpus.spin_less_when_busy(mine, busy) is False and mine == {"GOMP_SPINCOUNT": "1000"}


# -- the pools --------------------------------------------------------------------------------
def test_sessions_get_the_requested_threads(tmp_path):
    model = nearest_x2(tmp_path / "x2.onnx")
    with cpus.limits(3):
        opts = session_options()
        session = open_model(model, "cpu", task="super_resolve").session
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (3, 1)
    assert session.get_session_options().intra_op_num_threads == 3
    assert session_options().intra_op_num_threads == cpus.threads_for()
    pytest.importorskip("openvino")
    with cpus.limits(2):
        ov = open_model(model, "cpu", task="super_resolve", runtime="openvino").session
    assert int(ov._compiled.get_property("INFERENCE_NUM_THREADS")) == 2


def test_threads_options_and_config(tmp_path):
    assert UpscaleOptions(threads=2).threads == 2 and UpscaleOptions().threads == 0
    registries = load_registry(entry_points=False)
    toml = write_toml(
        tmp_path / "pipeline.toml",
        '[run]\nthreads = 3\n[data]\ndataset = "shapes"\n[model]\nvariant = "dcgan"\n[train]\n',
    )
    assert load_config(toml, registries).run.threads == 3
    bad = write_toml(tmp_path / "bad.toml", toml.read_text().replace("3", "-1"))
    with pytest.raises(ConfigError, match=r"run\.threads") as info:
        load_config(bad, registries)
    assert "\n" not in str(info.value)


class Recording(DCGAN):
    """DCGAN that records torch's thread count at each step."""

    seen: list[int] = []

    def train_step(self, ctx, batch):
        self.seen.append(torch.get_num_threads())
        return super().train_step(ctx, batch)


def test_training_runs_with_the_requested_threads_and_restores(tmp_path):
    from ganpipe.data.sources import ShapesDataset, ShapesOptions
    from ganpipe.training.threads import cpu_thread_count, cpu_threads

    data = ShapesDataset().load(ShapesOptions(count=8, classes=1, seed=0), 8, 3, Path("."))
    opts = TrainOptions(
        steps=2, batch_size=4, log_every=1, sample_every=0, checkpoint_every=0, progress=False
    )
    before = torch.get_num_threads()  # 1 in the tests (conftest)
    variant = Recording()
    variant.seen = []
    vopts = DCGANOptions(latent_dim=4, g_width=2, d_width=2)
    with cpus.limits(2):  # as [run] threads = 2 sets it for every stage
        Trainer(variant, vopts, opts, data, tmp_path, device="cpu").run()
    assert variant.seen == [2, 2] and torch.get_num_threads() == before
    # automatic: never above the process's own lower count; other devices: untouched
    assert cpu_thread_count() == min(before, cpus.threads_for())
    torch.set_num_threads(AFFINITY)
    try:
        with cpu_threads("cpu", share=AFFINITY) as n:
            assert n == torch.get_num_threads() == 1
        with cpu_threads("meta") as n:
            assert n == AFFINITY
    finally:
        torch.set_num_threads(before)


# -- real processes -----------------------------------------------------------------------
CHILD = """
import json, os, sys
from ganpipe import cpus
from ganpipe.inference.session import open_model
from ganpipe.registry import load_registry
session = open_model(sys.argv[1], "cpu", task="super_resolve").session
out = {"usable": cpus.usable_cpus(), "cpu_count": os.cpu_count(),
       "ort": session.get_session_options().intra_op_num_threads}
if sys.argv[2] == "torch":
    import torch
    from ganpipe.training.threads import cpu_threads
    with cpu_threads("cpu") as n:
        out["torch"] = [n, torch.get_num_threads()]
print(json.dumps(out))
"""


def run_child(model: Path, torch_too: bool, preexec) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), "torch" if torch_too else "-"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_process_pinned_to_one_cpu_gets_one_thread(tmp_path):
    model = nearest_x2(tmp_path / "x2.onnx")
    first = min(os.sched_getaffinity(0))
    out = run_child(model, True, lambda: os.sched_setaffinity(0, {first}))
    assert out["usable"] == 1 and out["ort"] == 1 and out["torch"] == [1, 1], out


def quota_cgroup(tmp_path: Path) -> Path:
    """A real cgroup v1 ``cpu`` folder with a quota of one CPU (root only; else skip)."""
    base = Path("/sys/fs/cgroup/cpu")
    if os.geteuid() != 0 or not (base / "cpu.cfs_quota_us").exists():
        pytest.skip("a real cgroup quota needs root and a cgroup v1 cpu hierarchy")
    folder = base / f"ganpipe-test-{os.getpid()}"
    try:
        folder.mkdir()
        (folder / "cpu.cfs_period_us").write_text("100000")
        (folder / "cpu.cfs_quota_us").write_text("100000")
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup here: {exc}")
    return folder


def test_a_process_under_a_one_cpu_quota_gets_one_thread(tmp_path):
    model = nearest_x2(tmp_path / "x2.onnx")
    folder = quota_cgroup(tmp_path)
    try:
        procs = folder / "cgroup.procs"
        out = run_child(model, False, lambda: procs.write_text(str(os.getpid())))
    finally:
        folder.rmdir()  # empty again: the child has exited
    assert out["usable"] == 1 and out["ort"] == 1, out
    assert out["cpu_count"] == os.cpu_count()  # what ganpipe sized pools from before
