"""The page of the run report: header, stage table, the sections, the plugins' sections
(:mod:`ganpipe.report.extensions`), the recorded pipeline.toml, and the page's own CSS and
(small, inline) JS."""

from __future__ import annotations

import time
from pathlib import Path

from ganpipe import __version__
from ganpipe.errors import one_line
from ganpipe.fsutil import write_bytes
from ganpipe.outputs import TrainOutput
from ganpipe.report.extensions import plugin_sections
from ganpipe.report.markup import compact, duration, esc, section_html, table_html
from ganpipe.report.results import (
    evaluate_html,
    images_html,
    model_card_html,
    sr_html,
    upscale_html,
)
from ganpipe.report.run import RunRecord, load_run, when
from ganpipe.report.training import training_html

REPORT = "report.html"

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--card:#fff;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--fg);background:var(--bg)}
header{background:#24292f;color:#fff;padding:18px 0}
header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:4px 0 0;color:#c9d1d9;font-size:13px}
.wrap{max-width:1280px;margin:0 auto;padding:0 20px}
nav{background:#fff;border-bottom:1px solid var(--line)}
nav a{display:inline-block;padding:8px 10px;color:var(--accent);text-decoration:none;
  font-size:14px}
nav a:hover{background:var(--bg)}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;
  padding:16px 20px;margin:18px 0}
h2{margin:0 0 10px;font-size:18px}
h3{margin:10px 0 6px;font-size:14px;color:var(--muted)}
.note{color:var(--muted);margin:0 0 10px;font-size:13px}
table{border-collapse:collapse;margin:6px 0;font-size:13.5px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--bg);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{font-weight:500;color:var(--muted);white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;
  font-weight:600;white-space:nowrap}
.done{background:#dafbe1;color:#116329}.failed{background:#ffebe9;color:#a40e26}
.missing,.outputs-missing{background:#fff8c5;color:#7d4e00}
.not-run{background:#eaeef2;color:#59636e}
.interrupted,.terminated{background:#fff8c5;color:#7d4e00}
div.outputs a{color:var(--accent);text-decoration:none}
div.outputs s{color:#a40e26}
div.details{color:var(--muted);max-width:460px}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:12px;
  overflow:auto;font-size:13px;line-height:1.45}
code{background:var(--bg);padding:1px 5px;border-radius:4px;font-size:13px}
figure{margin:6px 0;display:inline-block;vertical-align:top}
figcaption{color:var(--muted);font-size:12.5px;text-align:center;margin-top:3px}
img{display:block;height:auto;background:#000}
img.pix,.pix{image-rendering:pixelated}
.row{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:flex-start}
.cols{display:flex;flex-wrap:wrap;gap:24px}
.plots{display:flex;flex-wrap:wrap;gap:10px;margin-top:8px}
svg.plot{width:350px;height:214px;background:#fff;border:1px solid var(--line);
  border-radius:6px}
svg.plot .t{font-size:12.5px;font-weight:600;fill:var(--fg)}
svg.plot .a{font-size:10.5px;fill:var(--muted)}
svg.plot .g{stroke:#eaeef2;stroke-width:1}
svg.plot .f{fill:none;stroke:var(--line)}
svg.plot .r{stroke:#8c959f;stroke-dasharray:4 3}
.samples .frame img[hidden]{display:none}
.slider{display:flex;align-items:center;gap:12px;margin:8px 0;max-width:520px}
.slider input{flex:1}
.slider output{font-variant-numeric:tabular-nums;font-weight:600}
.strip{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}
.thumb{border:2px solid transparent;background:none;padding:0;cursor:pointer;
  border-radius:4px;font-size:11px;color:var(--muted)}
.thumb.on{border-color:var(--accent)}
.thumb span{display:block;text-align:center}
.nw{white-space:nowrap}
footer{color:var(--muted);font-size:12px;padding:10px 0 30px}
"""

JS = """
document.querySelectorAll('[data-samples]').forEach(function (box) {
  var frames = box.querySelectorAll('.frame img');
  var thumbs = box.querySelectorAll('.thumb');
  var range = box.querySelector('input[type=range]');
  var out = box.querySelector('output');
  var steps = range ? range.dataset.steps.split(',') : [];
  function show(i) {
    frames.forEach(function (f, j) { f.hidden = j !== i; });
    thumbs.forEach(function (t, j) { t.classList.toggle('on', j === i); });
    if (range) { range.value = i; out.textContent = Number(steps[i]).toLocaleString('en'); }
  }
  if (range) { range.addEventListener('input', function () { show(Number(range.value)); }); }
  thumbs.forEach(function (t, j) { t.addEventListener('click', function () { show(j); }); });
  show(frames.length - 1);
});
"""


def _outputs_html(record: RunRecord, stage) -> str:
    links = []
    for key, rel in stage.outputs.items():
        target = record.run_dir / rel
        href = esc(Path(rel).as_posix() if not Path(rel).is_absolute() else target.as_uri())
        text = f"{esc(key)}: {esc(rel)}"
        if key in stage.missing:
            links.append(f'<s title="missing">{text}</s>')
        else:
            links.append(f'<a href="{href}">{text}</a>')
    return "<br>".join(links)


def stages_html(record: RunRecord) -> str:
    rows = []
    total = 0.0
    for st in record.stages:
        total += st.seconds or 0.0
        details = st.error or st.summary or compact(st.info)
        rows.append(
            [
                f"<b>{esc(st.name)}</b>",
                f'<span class="badge {esc(st.status.replace(" ", "-"))}">{esc(st.status)}</span>',
                f'<span class="nw">{esc(duration(st.seconds))}</span>',
                f'<span class="nw">{esc(when(st.finished_at))}</span>',
                f'<div class="outputs">{_outputs_html(record, st)}</div>',
                f'<div class="details">{esc(details)}</div>',
            ]
        )
    body = table_html(
        ["stage", "status", "time", "finished", "outputs", "details"], rows, numeric_from=9
    )
    done = sum(st.status == "done" for st in record.stages)
    note = f"{done} of {len(record.stages)} stage(s) done, {duration(total)} in all"
    return section_html("stages", "Stages", body, note=note)


def pipeline_html(record: RunRecord) -> str:
    if record.pipeline_text is None:
        return section_html(
            "pipeline",
            "pipeline.toml",
            "",
            note="this run did not record its pipeline.toml (run it again with this ganpipe)",
        )
    return section_html(
        "pipeline",
        "pipeline.toml",
        f"<pre>{esc(record.pipeline_text)}</pre>",
        note=f"from {record.pipeline_source}",
    )


def _subtitle(record: RunRecord) -> str:
    bits = [str(record.run_dir.resolve())]
    model, data = record.table("model"), record.table("data")
    if model.get("variant"):
        bits.append(f"variant {model['variant']}")
    if data.get("dataset"):
        bits.append(f"data {data['dataset']} {data.get('image_size', '')} px".strip())
    train = record.stage_output(TrainOutput)
    if train is not None and train.steps:
        bits.append(f"{train.steps:,} steps on {train.device or '?'}")
    return " · ".join(bits)


#: the sections, in page order: (builder, anchor, title)
SECTIONS = (
    (stages_html, "stages", "Stages"),
    (training_html, "training", "Training"),
    (images_html, "images", "Data and generated images"),
    (sr_html, "sr", "Before / after"),
    (evaluate_html, "evaluate", "Evaluation"),
    (upscale_html, "upscale", "Upscale"),
    (model_card_html, "model", "Model card"),
    (pipeline_html, "pipeline", "pipeline.toml"),
)


def _section(builder, anchor: str, title: str, record: RunRecord) -> str:
    """One section; a part of the run that cannot be shown is said so there, and the
    rest of the report is still written."""
    try:
        return builder(record)
    except Exception as exc:  # noqa: BLE001 - one odd file must not cost the whole report
        note = f"could not be shown: {type(exc).__name__}: {one_line(exc)}"
        return section_html(anchor, title, "", note=note)


def render(record: RunRecord, *, entry_points: bool = True) -> str:
    """The page; the plugins' sections (third-party ones unless ``entry_points`` is false)
    come after the model card, before the pipeline.toml."""
    parts = [(a, t, _section(build, a, t, record)) for build, a, t in SECTIONS]
    parts[-1:-1] = plugin_sections(record, entry_points)
    parts = [p for p in parts if p[2]]
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in parts)
    sections = [html for _, _, html in parts]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(record.name)} · ganpipe run report</title>"
        f"<style>{CSS}</style></head><body>"
        f'<header><div class="wrap"><h1>{esc(record.name)}</h1>'
        f"<p>{esc(_subtitle(record))}</p></div></header>"
        f'<nav><div class="wrap">{nav}</div></nav>'
        f'<main class="wrap">{"".join(sections)}</main>'
        f'<footer class="wrap">ganpipe {esc(__version__)} · report written {esc(stamp)}'
        f"</footer><script>{JS}</script></body></html>"
    )


def write_report(run_dir: str | Path, *, entry_points: bool = True) -> Path:
    """Write ``RUN_DIR/report.html`` (one self-contained file) and return its path;
    :class:`~ganpipe.report.run.RunFolderError` when ``run_dir`` is not a run folder.
    ``entry_points``: third-party plugins may add sections (see :func:`render`)."""
    record = load_run(run_dir)
    path = record.run_dir / REPORT
    write_bytes(path, render(record, entry_points=entry_points).encode("utf-8"))
    return path
