"""Property tests (hypothesis) that keep the hardening of issue 11 fixed: config parsing
(random TOML values for known keys: a one-line error naming the file, or success - never
a traceback; in process and through the real CLI) and the model card (round trip). Tiling
geometry and output naming: ``test_hardening_properties.py``.

Example counts are modest and deadlines off: the suite runs on 2 shared cores.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganpipe.config import load_config
from ganpipe.errors import GanpipeError
from ganpipe.modelcard import INPUT_KINDS, InputSpec, ModelCard
from ganpipe.registry import load_registry


def fast(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# -- TOML ------------------------------------------------------------------------------------
def quoted(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's (non-ASCII kept as it is, so that no
    surrogate escapes appear); TOML also refuses a raw DEL."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{quoted(k)} = {toml(v)}" for k, v in value.items()) + "}"


def toml_document(tables: dict[str, dict]) -> str:
    out = []
    for name, table in tables.items():
        out.append(f"[{name}]")
        out += [f"{quoted(k)} = {toml(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
SCALAR = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-3, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.booleans(),
)
ANY = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(TEXT, SCALAR, max_size=2))
#: known keys and plausible values for them (every key also gets arbitrary TOML values)
COMMON = {
    "run": {
        "name": st.sampled_from(["ok", "with space", "", "../up", "a.b-c_d"]),
        "seed": st.integers(-5, 2**66),
        "device": st.sampled_from(["cpu", "auto", "cuda", "cuda:7", "mps", "tpu", " CPU "]),
    },
    "data": {
        "image_size": st.sampled_from([0, 3, 4, 8, 12, 16, 24, 32, 64, 4096, 4097, 2**40]),
        "channels": st.sampled_from([0, 1, 2, 3, 4]),
        "holdout": st.floats(-1, 2),
    },
    "train": {
        "steps": st.integers(-1, 10**9),
        "batch_size": st.integers(-1, 10**12),
        "ema_decay": st.floats(-1, 2) | st.just(math.nan),
        "devices": st.integers(-1, 100),
        "amp": st.sampled_from(["auto", "off", "bf16", "fp16", "fp8"]),
        "diffaugment": st.lists(st.sampled_from(["color", "cutout", "zoom"]), max_size=2),
        "init_from": st.sampled_from(["missing.pth", "imgs", "file.txt"]),
        "keep_checkpoints": st.integers(-1, 5),
    },
}
PATH = st.sampled_from(["imgs", "missing", "file.txt", "imgs/cats", ""])
#: each dataset: its valid keys, and plausible values of its own keys
DATASETS = {
    "shapes": ({"count": 8, "classes": 2}, {"count": st.integers(-2, 10**7),
                                            "classes": st.integers(-1, 8)}),
    "folder": ({"path": "imgs"}, {"path": PATH, "resize": st.sampled_from(["crop", "squash"])}),
    "patches": ({"path": "imgs"}, {"path": PATH, "per_image": st.integers(-1, 10**6)}),
}  # fmt: skip
SIZES = {"latent_dim": st.integers(-1, 10**5), "g_width": st.integers(-1, 64)}
SR = {"scale": st.integers(-1, 9), "adv_weight": st.floats(-1, 1) | st.just(math.nan)}
#: each variant: its valid tiny options, and plausible values of some of its keys
VARIANTS = {
    "dcgan": ({"latent_dim": 8}, SIZES),
    "cgan": ({"latent_dim": 8}, SIZES),
    "wgan-gp": ({"latent_dim": 8}, SIZES | {"n_critic": st.integers(-1, 9)}),
    "vae": ({"latent_dim": 8}, SIZES),
    "infogan": ({"latent_dim": 8}, SIZES | {"n_categorical": st.integers(-1, 3)}),
    "biggan": ({"latent_dim": 16}, SIZES | {"attention": st.integers(-1, 128)}),
    "stylegan": ({"latent_dim": 8, "w_dim": 8}, {"mapping_layers": st.integers(-1, 20)}),
    "pggan": ({"latent_dim": 8}, SIZES | {"phase_steps": st.integers(-1, 10)}),
    "gan": ({"latent_dim": 8}, SIZES),
    "espcn": ({"scale": 2}, SR),
    "esrgan": ({"scale": 2, "num_block": 1}, SR),
    "cyclegan": ({"d_layers": 2}, {"d_layers": st.integers(-1, 8)}),
}


VALID_EXAMPLE = {
    "run": {"name": "p", "device": "cpu"},
    "data": {"dataset": "shapes", "image_size": 16, "count": 8, "classes": 2},
    "model": {"variant": "dcgan", "latent_dim": 8},
}


@st.composite
def pipelines(draw) -> dict[str, dict]:
    """A valid tiny pipeline (a dataset and a variant with their own keys) with up to four
    known keys set to plausible or arbitrary values; now and then an unknown key, a table
    dropped or a stage table added."""
    dataset = draw(st.sampled_from(sorted(DATASETS)))
    variant = draw(st.sampled_from(sorted(VARIANTS)))
    (data, data_keys), (model, model_keys) = DATASETS[dataset], VARIANTS[variant]
    tables = {
        "run": {"name": "p", "device": "cpu"},
        "data": {"dataset": dataset, "image_size": 16, **data},
        "model": {"variant": variant, **model},
        "train": {"steps": 2, "batch_size": 4},
    }
    keys = {**COMMON, "data": COMMON["data"] | data_keys, "model": model_keys}
    known = sorted((t, k) for t, table in keys.items() for k in table)
    for table, key in draw(st.lists(st.sampled_from(known), unique=True, max_size=4)):
        tables[table][key] = draw(st.one_of(keys[table][key], keys[table][key], ANY))
    extra = draw(st.integers(0, 11))
    if extra == 0:
        tables[draw(st.sampled_from(sorted(tables)))][draw(TEXT)] = draw(ANY)
    elif extra == 1:
        del tables[draw(st.sampled_from(["run", "data", "model"]))]
    elif extra == 2:
        tables[draw(st.sampled_from(["export", "generate", "evaluat", "upscale"]))] = {}
    elif extra == 3:
        tables["model"]["variant"] = draw(st.sampled_from(["nope", "DCGAN", ""]))
    return tables


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("props")
    for label in ("cats", "dogs"):
        (root / "imgs" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(
                root / "imgs" / label / f"{i}.png"
            )
    (root / "file.txt").write_text("not images")
    return root


@pytest.fixture(scope="module")
def registries():
    return load_registry(entry_points=False)


def assert_one_line(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    assert text.startswith(str(path)), f"no file:line in: {text}"


@fast(150)
@given(tables=pipelines())
@example(tables={**VALID_EXAMPLE, "train": {"steps": 1, "\nrd@": 0}})  # found by hypothesis
def test_load_config_succeeds_or_fails_in_one_line(base, registries, tables):
    path = base / "pipeline.toml"
    path.write_text(toml_document(tables), encoding="utf-8")
    try:
        load_config(path, registries)
    except GanpipeError as exc:
        assert_one_line(exc, path)
    assert not (base / "runs").exists()


@fast(30)
@given(text=st.text(st.sampled_from("[]=\"=. \nab1\t#{},'\\"), max_size=60))
def test_broken_toml_is_one_line(base, registries, text):
    path = base / "broken.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, registries)
    except GanpipeError as exc:
        assert_one_line(exc, path)


CLI_PIPELINE = {
    "run": {"name": "p", "device": "cpu"},
    "data": {"dataset": "shapes", "image_size": 8, "count": 8, "classes": 2},
    "model": {"variant": "dcgan", "latent_dim": 4, "g_width": 2, "d_width": 2},
    "train": {"steps": 1, "batch_size": 4, "progress": False, "sample_every": 0,
              "checkpoint_every": 0, "num_samples": 2},
}  # fmt: skip
#: values whose run, when valid, stays cheap: sizes <= 32, batches <= 16, steps <= 2
CLI_VALUES = {
    ("data", "image_size"): st.one_of(st.integers(-4, 32), st.just(2**40), TEXT),
    ("train", "batch_size"): st.one_of(st.integers(-2, 16), st.just(10**9), st.floats()),
    ("train", "steps"): st.one_of(st.integers(-1, 2), TEXT),
    ("run", "seed"): st.one_of(st.integers(-3, 3), st.just(2**70), st.just(-(2**63))),
    ("model", "latent_dim"): st.one_of(st.integers(-1, 8), st.just(10**7)),
    ("data", "channels"): st.one_of(st.integers(0, 4), TEXT),
}


MUTATIONS = st.lists(
    st.sampled_from(sorted(CLI_VALUES)).flatmap(lambda k: st.tuples(st.just(k), CLI_VALUES[k])),
    min_size=1,
    max_size=2,
    unique_by=lambda mutation: mutation[0],
)


@fast(4)
@given(mutations=MUTATIONS)
@example(mutations=[(("run", "seed"), 2**70)])  # torch.manual_seed overflowed, in training
def test_the_cli_never_prints_a_traceback(base, mutations):
    tables = json.loads(json.dumps(CLI_PIPELINE))
    for (table, key), value in mutations:
        tables[table][key] = value
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        path = Path(tmp) / "pipeline.toml"
        path.write_text(toml_document(tables), encoding="utf-8")
        proc = run_cli("run", str(path), cwd=Path(tmp), timeout=300)
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        if proc.returncode:
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode in (1, 2) and len(lines) == 1, proc.stderr[-2000:]
            assert lines[0].startswith(f"ganpipe: error: {path}"), lines[0]


# -- the model card --------------------------------------------------------------------------
FIELDS = set(ModelCard.model_fields) | {"num_classes"}


SAFE = TEXT  # any text, JSON-looking strings included, reads back as written
FINITE = st.floats(-1e6, 1e6, allow_nan=False)
JSONABLE = st.one_of(st.integers(-(2**53), 2**53), FINITE, st.booleans(), SAFE, st.lists(SAFE))


@st.composite
def cards(draw) -> ModelCard:
    lo = draw(FINITE)
    inputs = draw(st.lists(st.builds(InputSpec, SAFE, st.sampled_from(INPUT_KINDS),
                                     st.tuples(st.integers(0, 64))), max_size=3))  # fmt: skip
    return ModelCard(
        task=draw(st.sampled_from(["generate", "super_resolve", "translate"])),
        variant=draw(SAFE),
        image_size=draw(st.integers(0, 4096)),
        channels=draw(st.integers(1, 4)),
        class_names=tuple(draw(st.lists(TEXT, max_size=4))),
        value_range=(lo, lo + draw(st.floats(1e-3, 1e3))),
        inputs=tuple(inputs),
        output=draw(SAFE),
        latent_dim=draw(st.integers(0, 4096)),
        scale=draw(st.none() | st.integers(1, 8)),
        tile_multiple=draw(st.integers(1, 16)),
        direction=draw(st.none() | st.sampled_from(["AtoB", "BtoA"])),
        resolution=draw(st.none() | st.integers(1, 1024)),
        precision=draw(st.sampled_from(["float32", "float16"])),
        imported_from=draw(st.none() | SAFE),
        extra=draw(st.dictionaries(TEXT.filter(lambda k: k not in FIELDS), JSONABLE, max_size=3)),
    )


@fast(100)
@given(card=cards())
def test_model_card_round_trips(card):
    props = card.to_props()
    assert all(k.startswith("ganpipe.") and isinstance(v, str) for k, v in props.items())
    assert ModelCard.from_props(props) == card


def test_model_card_round_trips_strings_that_look_like_json():
    card = ModelCard(task="generate", variant="123", extra={"note": "true"})
    assert ModelCard.from_props(card.to_props()) == card
