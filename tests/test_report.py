"""The run report (``ganpipe report RUN_DIR``): built from two real small runs (a conditional
GAN with augment, export, generate and evaluate; an ESPCN super-resolution run with
evaluate and upscale, one of its images corrupt) and opened in headless Chromium.

The browser test needs Chromium (Debian: ``apt-get install -y chromium``) and the
``playwright`` package (``pip install playwright``; no ``playwright install``: the system
browser is used). Without them it fails, saying what to install: it does not skip.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_toml
from PIL import Image

from ganpipe.errors import GanpipeError
from ganpipe.pipeline import run_file
from ganpipe.report import REPORT, RunFolderError, load_run, write_report

CHROMIUM = os.environ.get("GANPIPE_CHROMIUM", "/usr/bin/chromium")

GAN = """
# a comment the report must show as text: <script>window.__injected = 1</script> & <b>x</b>
[run]
name = "report-gan"
out_dir = "runs"
seed = 0
device = "cpu"

[data]
dataset = "shapes"
image_size = 16
count = 64
classes = 3

[model]
variant = "cgan"
latent_dim = 8
g_width = 8
d_width = 8

[augment]
copies = 1
hflip = 0.5

[train]
steps = 24
batch_size = 16
log_every = 4
sample_every = 8
checkpoint_every = 0
num_samples = 16
progress = false

[export]

[generate]
count = 12

[evaluate]
count = 48
kid_subset_size = 16
"""

SR = """
[run]
name = "report-sr"
out_dir = "runs"
seed = 0
device = "cpu"

[data]
dataset = "shapes"
image_size = 16
count = 32
holdout = 0.25

[model]
variant = "espcn"
scale = 2
feat1 = 8
feat2 = 4
lr_g = 3e-3

[train]
steps = 12
batch_size = 8
log_every = 4
sample_every = 0
checkpoint_every = 0
num_samples = 4
progress = false

[export]

[evaluate]

[upscale]
input = "photos"
suffix = "_x2"
"""


def _run(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_toml(folder / "pipeline.toml", text)
    manifest = run_file(path, entry_points=False, log=lambda *a: None)
    run_dir = manifest.path.parent
    assert (run_dir / "pipeline.toml").read_bytes() == path.read_bytes()  # the run's copy
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    photos = root / "sr" / "photos"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    return {"gan": _run(root / "gan", GAN), "sr": _run(root / "sr", SR)}


@pytest.fixture(scope="module")
def reports(runs) -> dict[str, Path]:
    return {name: write_report(run_dir) for name, run_dir in runs.items()}


# -- the page, read as text -------------------------------------------------------------------
def test_report_is_one_self_contained_file(reports):
    for path in reports.values():
        assert path.name == REPORT and path.is_file()
        html = path.read_text(encoding="utf-8")
        assert "<link" not in html and "@import" not in html
        for attr in ("src=", "href="):
            for chunk in html.split(attr)[1:]:
                url = chunk[1:].split(chunk[0], 1)[0]
                assert not url.startswith(("http:", "https:", "//")), url
        assert 'src="data:image/png;base64,' in html


def test_gan_report_has_every_part(runs, reports):
    html = reports["gan"].read_text(encoding="utf-8")
    for stage in ("augment", "train", "export", "generate", "evaluate"):
        assert f"<b>{stage}</b>" in html
    assert html.count('class="badge done"') == 5
    # the pipeline.toml, escaped: its comment is text, not markup
    assert "&lt;script&gt;window.__injected = 1&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;" in html
    assert "<script>window.__injected" not in html
    # sample grids of steps 8, 16, 24 behind a slider; curves; the per-class table
    assert 'type="range"' in html and 'data-steps="8,16,24"' in html
    for title in ("d_loss", "g_loss", "sample diversity", "FID per class"):
        assert title in html
    for name in ("circle", "square", "triangle"):
        assert f"<td>{name}</td>" in html
    # the model card of the exported model, and how to generate one class
    assert "latent_dim" in html and "--label circle" in html


def test_sr_report_has_crops_and_upscale_failures(reports):
    html = reports["sr"].read_text(encoding="utf-8")
    assert "Before / after" in html and "bicubic" in html and "held-out" in html
    assert html.count('alt="model ') >= 4
    assert "PSNR against bicubic" in html
    assert "broken.png" in html and "failures" in html


def test_report_does_not_import_torch(runs):
    code = (
        "import sys; from ganpipe.report import write_report; "
        f"write_report({str(runs['sr'])!r}); write_report({str(runs['gan'])!r}); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_text_from_the_run_is_escaped(tmp_path):
    """Stage names, outputs, info and errors come from the manifest: all of it is text."""
    evil = '<img src=x onerror="alert(1)">'
    manifest = {
        "format": 1,
        "stages": {
            "train": {
                "outputs": {"checkpoint": evil},
                "info": {"device": evil},
                "seconds": 1.0,
                "finished_at": evil,
            },
            evil: {"outputs": {}, "info": {}, "error": evil},
        },
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "outputs missing" in html and "failed" in html


def test_odd_files_cost_their_part_only(tmp_path):
    """Corrupt or unexpected files in a run: the report is still written."""
    (tmp_path / "train" / "samples").mkdir(parents=True)
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "train" / "samples" / "step_00000010.png").write_bytes(b"not a png")
    (tmp_path / "train" / "metrics.jsonl").write_text('{"step": 1, "loss": 2}\n{cut sh\n[1]\n')
    (tmp_path / "evaluate" / "metrics.json").write_text('{"scores": "odd", "per_class": 5}')
    manifest = {
        "stages": {
            "train": {"outputs": {"metrics": "train/metrics.jsonl"}, "info": {"steps": "x"}},
            "evaluate": {"outputs": {"metrics": "evaluate/metrics.json"}, "info": {}},
        }
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<b>train</b>" in html and "<b>evaluate</b>" in html
    assert "could not be shown: ValueError" in html  # the evaluate part
    assert "last log line, step 1: loss 2" in html
    assert "did not record its pipeline.toml" in html


def test_missing_or_invalid_run_folder(tmp_path):
    with pytest.raises(RunFolderError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(RunFolderError, match="not a ganpipe run folder"):
        load_run(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(GanpipeError, match="not readable JSON"):
        load_run(tmp_path)


def _ganpipe(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``ganpipe ARGS`` in-process, with ``report`` in the command table (the lead's
    registration, made here too so that the command is tested before and after it)."""
    cli_main = importlib.import_module("ganpipe.cli.main")
    monkeypatch.setitem(
        cli_main.COMMANDS, "report", ("ganpipe.cli.report:report", "Write a run's report.html.")
    )
    try:
        cli_main.main.main(args=list(args), prog_name="ganpipe")
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_report(runs, tmp_path, monkeypatch, capsys):
    code, _, err = _ganpipe(monkeypatch, capsys, "report", str(tmp_path / "missing"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: error: run folder"), err
    assert "does not exist" in lines[0] and "Traceback" not in err
    code, _, err = _ganpipe(monkeypatch, capsys, "report", str(tmp_path))
    assert code == 2 and "not a ganpipe run folder" in err and len(err.strip().splitlines()) == 1
    code, out, err = _ganpipe(monkeypatch, capsys, "report", str(runs["gan"]))
    assert code == 0, err
    assert str(runs["gan"] / REPORT) in out


# -- the page, in a real browser ----------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"headless Chromium not found at {CHROMIUM}: install it (Debian: apt-get install -y "
            f"chromium) or point GANPIPE_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the report's browser test needs playwright: pip install playwright "
            "(the system Chromium is used; do not run `playwright install`)",
            pytrace=False,
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, requests = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, problems, requests


@pytest.mark.parametrize("name", ["gan", "sr"])
def test_report_in_chromium(browser, reports, name):
    path = reports[name]
    page, problems, requests = _open(browser, path)
    try:
        assert problems == [], problems
        assert all(u.startswith("data:") or u == path.resolve().as_uri() for u in requests), (
            requests
        )
        widths = page.evaluate(
            "Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)"
        )
        assert widths and all(w > 0 for w in widths), widths
        assert page.evaluate("window.__injected === undefined")
        svgs = page.locator("svg.plot").count()
        # gan: d_loss, g_loss, diversity, throughput, 3 per-class charts; sr: content,
        # g_loss, throughput, PSNR and SSIM bars
        assert svgs >= (7 if name == "gan" else 5), svgs
        for box in page.locator("svg.plot").all():
            assert box.bounding_box()["width"] > 100
        if name == "gan":  # the slider goes back to the first sample grid
            frames = page.locator(".samples .frame img")
            assert frames.count() == 3 and frames.nth(2).is_visible()
            page.locator('input[type="range"]').fill("0")
            assert frames.nth(0).is_visible() and not frames.nth(2).is_visible()
            assert page.locator(".slider output").inner_text() == "8"
            page.locator(".thumb").nth(2).click()
            assert frames.nth(2).is_visible()
        shot = path.with_suffix(".png")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        page.close()
