"""The training part of the run report: the curves of ``train/metrics.jsonl`` and the sample
grids across steps (a slider, with a strip of every grid below it)."""

from __future__ import annotations

from ganpipe.outputs import TrainOutput
from ganpipe.report.images import display_width, img_tag, open_picture
from ganpipe.report.markup import figure_html, section_html
from ganpipe.report.run import RunRecord, read_metrics, sample_grids
from ganpipe.report.svg import line_plot

#: metrics.jsonl keys that are not losses
NOT_LOSSES = ("step", "images_per_s", "diversity")
#: width of the sample-grid thumbnails
THUMB = 96


def curves_html(rows: list[dict[str, float]]) -> str:
    """One chart per loss, the diversity (against the data's, 1.0) and the throughput."""
    if not rows:
        return ""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    plots = []
    for key in (k for k in keys if k not in NOT_LOSSES):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        plots.append(line_plot({key: (xs, ys)}, key, smoothed=True))
    div = [(r["step"], r["diversity"]) for r in rows if "diversity" in r]
    if div:
        plots.append(
            line_plot(
                {"diversity": ([p[0] for p in div], [p[1] for p in div])},
                "sample diversity (relative to the data's)",
                reference=(1.0, "data"),
            )
        )
    rate = [(r["step"], r["images_per_s"]) for r in rows if "images_per_s" in r]
    if rate:
        plots.append(
            line_plot(
                {"images/s": ([p[0] for p in rate], [p[1] for p in rate])},
                "throughput",
                ylabel="images/s",
            )
        )
    return f'<div class="plots">{"".join(plots)}</div>'


def samples_html(record: RunRecord) -> str:
    """The sample grids from the fixed inputs: the latest large, a slider to go back in
    steps, and a strip of all of them (click one to show it)."""
    grids = sample_grids(record.run_dir / "train" / "samples")
    pictures = [(step, open_picture(path)) for step, path in grids]
    pictures = [(s, p) for s, p in pictures if p is not None]
    if not pictures:
        return ""
    side = max(p.size[0] for _, p in pictures)
    width = display_width(side, 540, 4)
    last = len(pictures) - 1
    frames = []
    for i, (step, pic) in enumerate(pictures):
        hidden = "" if i == last else " hidden"
        frames.append(
            img_tag(pic, f"samples at step {step}", width=width, attrs=f'data-i="{i}"{hidden}')
        )
    strip = []
    for i, (step, pic) in enumerate(pictures):
        if pic.size[0] > THUMB:  # a small copy: the page carries each grid once in full
            pic = pic.resize((THUMB, max(1, round(pic.size[1] * THUMB / pic.size[0]))))
        strip.append(
            f'<button type="button" class="thumb" data-i="{i}" title="step {step}">'
            f"{img_tag(pic, f'step {step}', width=THUMB)}<span>{step:,}</span></button>"
        )
    slider = (
        f'<div class="slider"><label>step <output>{pictures[last][0]:,}</output></label>'
        f'<input type="range" min="0" max="{last}" value="{last}" step="1" '
        f'aria-label="training step" data-steps="{",".join(str(s) for s, _ in pictures)}">'
        f"</div>"
        if len(pictures) > 1
        else ""
    )
    return (
        f'<div class="samples" data-samples>'
        f'<div class="frame">{"".join(frames)}</div>{slider}'
        f'<div class="strip">{"".join(strip)}</div></div>'
    )


def training_html(record: RunRecord) -> str:
    train = record.stage("train")
    if train is None:
        return ""
    out = record.stage_output(TrainOutput)
    rows = read_metrics(
        out.metrics if out and out.metrics else record.run_dir / "train/metrics.jsonl"
    )
    body = ""
    samples = samples_html(record)
    if samples:
        body += figure_html(samples, "samples from the same fixed inputs across training")
    curves = curves_html(rows)
    if curves:
        body += curves
    last = rows[-1] if rows else {}
    note = ""
    if last:
        shown = ", ".join(
            f"{k} {v:.4g}" for k, v in last.items() if k not in ("step", "images_per_s")
        )
        note = f"last log line, step {int(last['step']):,}: {shown}"
    elif train.status != "not run":
        note = "no metrics were logged (train/metrics.jsonl is missing or empty)"
    return section_html("training", "Training", body, note=note) if body or note else ""
