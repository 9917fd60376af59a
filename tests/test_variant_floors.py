"""Every generative variant, with only ``variant`` and ``steps`` set, learns sklearn's digits
well enough to pass a floor after a short CPU run, so a regression in any recipe fails CI.

Each variant is trained on the 32 px digit class folders (``bench/digits.py``) by the real
pipeline (``ganpipe run`` in a subprocess: train, then export to ONNX), its images are
generated from the ``.onnx`` with ONNX Runtime, and the judge of ``bench/quality.py`` (an
SVM trained on the real digits plus a "not a digit" class; not the GAN's discriminator)
scores them:

* conditional models (the model card says so): more than ``FLOORS[variant]["accuracy"]``
  of the images judged as the digit asked for;
* unconditional models: more than ``FLOORS[variant]["confident"]`` judged as some digit
  with p > 0.5, and those spread over the classes (normalised entropy >
  ``FLOORS[variant]["entropy"]``).

``STEPS`` is a small budget per variant, about 20-80 CPU-seconds of training on one
thread (BigGAN about 100, the steps where it starts to follow the label): the fewest steps
at which each variant's digits already spread over the classes. The runs go two at a
time, one thread each, so the file takes about 6 minutes on 2 quiet cores (12 on a loaded
machine). Each floor sits well below what the variant measured at its budget with the
defaults in the tree when it was set (the figures are in ``MEASURED``), and far above what
a broken recipe gets (no confident digit, or one class only). PGGAN, at its budget still
growing through the low resolutions, is also held to a FID ceiling. Figures at
larger budgets: ``bench/results/variant-quality-*.md`` (``bench/variant_quality.py``).
"""

from __future__ import annotations

import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import quality as q  # noqa: E402
from bench.digits import MARKER, build_digits_folder  # noqa: E402

#: images judged per variant (conditional: every digit in turn)
SAMPLES = 200
#: ``ganpipe run`` subprocesses at a time, one intra-op thread each
LANES = 2
# Under pytest-xdist the tests run with ``--dist loadfile`` (README): every test of this file
# runs on one worker, so that the runs fixture trains each variant once.

#: generator updates per variant
STEPS = {
    "gan": 800,
    "dcgan": 500,
    "cgan": 450,
    "wgan-gp": 600,  # at 400 a CPU with AMX measured conf 0.27 (another 0.63): margin
    "infogan": 500,
    "biggan": 300,
    "stylegan": 300,
    "pggan": 70,
    "vae": 300,
    "lsgan": 900,
}
#: what each variant scored at STEPS when the floors were set (SAMPLES images, 2026-12-03;
#: stylegan, pggan and wgan-gp 2026-12-04, on a CPU with AMX)
MEASURED: dict[str, dict[str, float]] = {
    "gan": {"confident": 0.155, "entropy": 0.53, "fid": 12.4},
    "dcgan": {"confident": 0.76, "entropy": 0.96, "fid": 1.36},
    "cgan": {"accuracy": 0.84, "confident": 0.885, "fid": 1.21},
    "wgan-gp": {"confident": 0.78, "entropy": 0.853, "fid": 1.83},  # 2026-12-04
    "infogan": {"confident": 0.595, "entropy": 0.88, "fid": 1.22},
    "biggan": {"accuracy": 0.995, "confident": 0.995, "fid": 1.68},
    "stylegan": {"confident": 0.5, "entropy": 0.638, "fid": 2.04},  # 2026-12-04
    "pggan": {"confident": 0.85, "entropy": 0.769, "fid": 4.68},  # 2026-12-04
    "vae": {"confident": 0.355, "entropy": 0.965, "fid": 7.87},
    "lsgan": {"confident": 0.54, "entropy": 0.907, "fid": 2.33},
}
#: FID of 200 pixel-noise images against the digits: what a recipe that learns nothing gets
NOISE_FID = 63.3
#: the floors: conditional variants an accuracy, unconditional ones confident + entropy;
#: a FID ceiling (``fid``, well below NOISE_FID) where the shares alone say too little
FLOORS: dict[str, dict[str, float]] = {
    "gan": {"confident": 0.07, "entropy": 0.3, "fid": 22.0},
    "dcgan": {"confident": 0.5, "entropy": 0.75},
    "cgan": {"accuracy": 0.6},
    "wgan-gp": {"confident": 0.3, "entropy": 0.55},
    "infogan": {"confident": 0.35, "entropy": 0.65},
    "biggan": {"accuracy": 0.5},
    "stylegan": {"confident": 0.25, "entropy": 0.45},
    "pggan": {"confident": 0.4, "entropy": 0.5, "fid": 12.0},
    "vae": {"confident": 0.2, "entropy": 0.75},
    "lsgan": {"confident": 0.25, "entropy": 0.65},
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> q.DataSet:
    return q.load_dataset("digits", tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def judge(digits) -> q.Judge:
    return q.train_judge(digits)


@pytest.fixture(scope="module")
def fid(digits) -> q.FID:
    """FID against the real digits (the offline features)."""
    return q.FID(digits.images)


def _train(variant: str, data: q.DataSet, folder: Path) -> Path:
    """``ganpipe run`` of train + export in ``folder``; the run folder."""
    folder.mkdir(parents=True)
    toml = folder / "pipeline.toml"
    toml.write_text(q.pipeline_toml("floor", variant, STEPS[variant], data.table, export=True))
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = run_cli("run", str(toml), cwd=folder, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return folder / "runs" / "floor"


@pytest.fixture(scope="module")
def runs(request, digits, tmp_path_factory):
    """The selected variants' runs, started at once in LANES subprocesses (longest first),
    each test waiting for its own."""
    wanted = [
        item.callspec.params["variant"]
        for item in request.session.items
        if item.originalname == "test_variant_meets_floor_on_digits"
    ]
    root = tmp_path_factory.mktemp("floors")
    pool = ThreadPoolExecutor(LANES)
    futures: dict[str, Future] = {}
    for variant in sorted(set(wanted), key=lambda v: -STEPS[v]):
        if variant != "lsgan" or _lsgan_installed():
            futures[variant] = pool.submit(_train, variant, digits, root / variant)
    yield futures
    pool.shutdown(cancel_futures=True)


def _lsgan_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ganpipe_lsgan") is not None


#: the distributions whose variants this file holds to floors: ganpipe's own and the
#: example plugins of this repository (a plugin another test installs for a moment, such
#: as test_scaffold's, is not one of them)
OURS = ("ganpipe (built-in)", "ganpipe-lsgan ")


def test_every_generative_variant_has_a_floor():
    """A new generative variant (built in, or one of this repository's example plugins)
    needs a budget in STEPS, so that it is held to the floor too."""
    from ganpipe.registry import load_registry

    variants = load_registry(entry_points=True).variants
    ours = {n for n in q.generative_variants() if variants.entries[n].dist.startswith(OURS)}
    missing = sorted(ours - (set(STEPS) & set(FLOORS)))
    assert not missing, f"add {missing} to STEPS and FLOORS in {Path(__file__).name}"


def test_floors_sit_below_what_was_measured():
    """Each floor has a margin below its variant's measured score, and each FID ceiling
    sits between the measured FID and what pixel noise gets."""
    for variant, floor in FLOORS.items():
        for key, bound in floor.items():
            measured = MEASURED[variant][key]
            if key == "fid":
                assert measured < bound < NOISE_FID, (variant, key)
            else:
                assert bound < measured, (variant, key)


def test_digits_folder_is_deterministic(tmp_path, digits):
    """1,797 PNGs in ten class folders, the same bytes on every build; a folder without
    its completion marker (a killed build) is rebuilt."""
    first = Path(digits.table["path"])
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 1797
    assert sorted(p.name for p in first.iterdir() if p.is_dir()) == [str(d) for d in range(10)]
    again = build_digits_folder(tmp_path / "again")
    for rel in files[::97]:
        assert (again / rel).read_bytes() == (first / rel).read_bytes(), rel
    (again / MARKER).unlink()
    (again / files[0]).unlink()
    assert (build_digits_folder(again) / files[0]).is_file()


def test_judge_knows_digits_from_junk(judge):
    """The instrument itself: held-out real digits right, held-out junk rejected."""
    assert judge.real_accuracy > 0.95, judge
    assert judge.junk_rejected > 0.9, judge


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(STEPS))
def test_variant_meets_floor_on_digits(variant, runs, judge, fid):
    if variant not in runs:
        pytest.skip(f"the {variant} plugin is not installed")
    run_dir = runs[variant].result()
    images, asked = q.generate(q.exported_model(run_dir), SAMPLES)
    scores = q.judge_scores(judge, images, asked)
    scores["fid"] = round(fid(images), 3)
    scores["train_s"] = q.train_info(run_dir)["seconds"]
    print(f"{variant} after {STEPS[variant]} steps: {scores}")
    floor = FLOORS[variant]
    judged = {"accuracy"} if scores["conditional"] else {"confident", "entropy"}
    assert floor and set(floor) <= judged | {"fid"}, f"FLOORS[{variant!r}]: {judged} or fid"
    for key, bound in floor.items():
        if key == "fid":  # lower is better: a ceiling
            assert scores["fid"] < bound, f"FID {scores['fid']:.3g} >= ceiling {bound}: {scores}"
        else:
            assert scores[key] > bound, f"{key} {scores[key]:.2f} <= floor {bound}: {scores}"
