"""The result parts of the run report: the evaluation scores (table and charts), the model
card of the exported ``.onnx``, super-resolution crops, the upscale summary and the images
of the augment and generate stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganpipe.outputs import UpscaleOutput, relative
from ganpipe.report.images import display_width, img_tag, open_picture
from ganpipe.report.markup import (
    esc,
    figure_html,
    key_values_html,
    number,
    section_html,
    table_html,
)
from ganpipe.report.run import RunRecord, read_json
from ganpipe.report.svg import bar_plot

#: score columns in this order first (the others after them)
SCORE_ORDER = (
    "fid",
    "kid",
    "kid_std",
    "precision",
    "recall",
    "density",
    "coverage",
    "diversity",
    "n_real",
    "n_fake",
    "prdc_n",
)


def _columns(rows: dict[str, dict[str, Any]]) -> list[str]:
    keys = [k for k in SCORE_ORDER if any(k in r for r in rows.values())]
    for r in rows.values():
        keys += [k for k in r if k not in keys and isinstance(r[k], int | float)]
    return keys


def sr_metric_label(data: dict[str, Any]) -> str:
    """How the PSNR/SSIM of an evaluate record were computed, e.g. ``Y, border 4``."""
    from ganpipe.metrics.sr_scores import label

    if isinstance(data.get("metric"), str):
        return data["metric"]
    return label(data.get("metric_space"), data.get("crop_border"), data.get("ssim_window"))


def _sr_scores(scores: dict[str, Any], how: str) -> str:
    rows = []
    for name, prefix in (("model", ""), ("bicubic", "bicubic_")):
        rows.append(
            [esc(name), number(scores.get(f"{prefix}psnr")), number(scores.get(f"{prefix}ssim"))]
        )
    plots = [
        bar_plot(
            [metric.upper()],
            {
                "model": [float(scores.get(metric, float("nan")))],
                "bicubic": [float(scores.get(f"bicubic_{metric}", float("nan")))],
            },
            f"{metric.upper()} against bicubic",
            ylabel=f"dB ({how})" if metric == "psnr" else how,
        )
        for metric in ("psnr", "ssim")
    ]
    head = ["", f"PSNR dB ({how})", f"SSIM ({how})"]
    return table_html(head, rows) + f'<div class="plots">{"".join(plots)}</div>'


def evaluate_html(record: RunRecord) -> str:
    stage = record.stage("evaluate")
    if stage is None:
        return ""
    data = read_json(record.output("evaluate", "metrics"))
    if data is None:
        note = "evaluate/metrics.json is missing or unreadable"
        return section_html("evaluate", "Evaluation", "", note=note)
    scores = dict(data.get("scores") or {})
    facts = ", ".join(
        f"{k}: {data[k]}" for k in ("real", "features", "scale", "direction", "seed") if k in data
    )
    if "psnr" in scores:
        how = sr_metric_label(data)
        facts += f"; PSNR/SSIM on {how} (BasicSR's default is Y, border = scale)"
        return section_html("evaluate", "Evaluation", _sr_scores(scores, how), note=facts)
    if isinstance(data.get("note"), str):
        facts += f". {data['note']}"
    elif "fid" in scores:  # written before the note existed
        from ganpipe.metrics.notes import fid_note

        facts += f". {fid_note(scores, str(data.get('features', 'unknown')) + ' features')}"
    rows: dict[str, dict[str, Any]] = {"all": scores}
    rows.update({str(k): dict(v) for k, v in dict(data.get("per_class") or {}).items()})
    cols = _columns(rows)
    body = table_html(
        ["images", *cols],
        ([esc(name), *(number(r.get(c, "")) for c in cols)] for name, r in rows.items()),
    )
    classes = [k for k in rows if k != "all"]
    if classes:
        charts = []
        for title, metrics in (
            ("FID per class (lower is better)", ("fid",)),
            ("precision / recall per class", ("precision", "recall")),
            ("density / coverage per class", ("density", "coverage")),
        ):
            series = {m: [float(rows[c].get(m, float("nan"))) for c in classes] for m in metrics}
            if any(m in rows[c] for m in metrics for c in classes):
                charts.append(bar_plot(classes, series, title))
        body += f'<div class="plots">{"".join(charts)}</div>'
    return section_html("evaluate", "Evaluation", body, note=facts)


def _onnx_facts(path: Path, model: Any) -> list[tuple[str, Any]]:
    def shape(value_info: Any) -> str:
        dims = value_info.type.tensor_type.shape.dim
        return "[" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + "]"

    params = 0
    for init in model.graph.initializer:
        n = 1
        for d in init.dims:
            n *= int(d)
        params += n
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    return [
        ("file", path.name),
        ("size", f"{path.stat().st_size / 1024:,.0f} KiB"),
        ("parameters", params),
        ("opsets", opsets),
        ("graph inputs", ", ".join(f"{i.name} {shape(i)}" for i in model.graph.input)),
        ("graph outputs", ", ".join(f"{o.name} {shape(o)}" for o in model.graph.output)),
    ]


def model_card_html(record: RunRecord) -> str:
    path = record.output("export", "model")
    if path is None:
        return ""
    import onnx

    from ganpipe.errors import GanpipeError
    from ganpipe.modelcard import ModelCard

    try:
        model = onnx.load(str(path), load_external_data=False)
        card = ModelCard.from_onnx(model, path)
    except (GanpipeError, OSError, ValueError) as exc:
        return section_html("model", "Model card", "", note=f"{path.name}: {exc}")
    fields = card.model_dump(
        mode="json", exclude={"inputs", "extra", "extensions"}, exclude_none=True
    )
    items: list[tuple[str, Any]] = [(k, v) for k, v in fields.items()]
    items.insert(
        3,
        (
            "inputs",
            "; ".join(f"{s.name}: {s.kind} {list(s.shape) or ''}".strip() for s in card.inputs),
        ),
    )
    items += [(f"extra.{k}", v) for k, v in card.extra.items()]
    items += [(f"{ns}.{k}", v) for ns, fields in card.extensions.items() for k, v in fields.items()]
    body = (
        '<div class="cols">'
        f"<div><h3>card</h3>{key_values_html(items)}</div>"
        f"<div><h3>ONNX file</h3>{key_values_html(_onnx_facts(path, model))}</div></div>"
    )
    if card.conditional and card.class_names:
        try:  # as the user would type it, from where the report was written
            shown = path.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            shown = str(path.resolve())
        label = card.class_names[0]
        body += (
            "<p>Images of one class: <code>"
            f"{esc(f'ganpipe generate -m {shown} -n 16 --label {label} -o {label}/')}"
            "</code></p>"
        )
    return section_html("model", "Model card", body)


def sr_html(record: RunRecord) -> str:
    path = record.output("export", "model")
    if path is None:
        return ""
    from ganpipe.report.sr import sr_crops

    try:
        import onnx

        from ganpipe.modelcard import ModelCard

        card = ModelCard.from_onnx(onnx.load(str(path), load_external_data=False), path)
    except Exception:  # noqa: BLE001 - the model card section says what is wrong
        return ""
    if card.task != "super_resolve":
        return ""
    crops, note = sr_crops(record, path)
    rows = []
    for i, c in enumerate(crops):
        w = display_width(c.hr.shape[1], 192, 8)
        cells = [
            figure_html(img_tag(c.lr, f"input {i}", width=w), "input (low-res)"),
            figure_html(
                img_tag(c.bicubic, f"bicubic {i}", width=w), f"bicubic {c.psnr_bicubic:.2f} dB"
            ),
            figure_html(img_tag(c.model, f"model {i}", width=w), f"model {c.psnr_model:.2f} dB"),
            figure_html(img_tag(c.hr, f"original {i}", width=w), "original"),
        ]
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    return section_html("sr", "Before / after", "".join(rows), note=note)


def upscale_html(record: RunRecord) -> str:
    out = record.stage_output(UpscaleOutput)
    if out is None:
        return ""
    items: list[tuple[str, Any]] = [("written", out.written), ("skipped", out.skipped)]
    items += [("scale", out.scale), ("seconds", out.seconds), ("failed", len(out.failed))]
    items.append(("output", relative(out.images, record.run_dir)))
    body = key_values_html([(k, v) for k, v in items if v is not None])
    if out.failed:
        body += "<h3>failures</h3>" + table_html(
            ["file", "reason"], ([esc(f), esc(r)] for f, r in out.failed), numeric_from=9
        )
    return section_html("upscale", "Upscale", body)


def images_html(record: RunRecord) -> str:
    """The augment stage's preview and the generate stage's grid (or its first images)."""
    figures = []
    preview = open_picture(p) if (p := record.output("augment", "preview")) else None
    if preview is not None:
        w = display_width(preview.size[0], 540, 4)
        figures.append(figure_html(img_tag(preview, "augmented data", width=w), "training data"))
    grid = open_picture(p) if (p := record.output("generate", "grid")) else None
    if grid is not None:
        w = display_width(grid.size[0], 540, 4)
        figures.append(figure_html(img_tag(grid, "generated", width=w), "generated (ONNX)"))
    elif (folder := record.output("generate", "images")) is not None and folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")[:16]
        pics = "".join(
            img_tag(pic, f.name, width=display_width(pic.size[0], 96, 4))
            for f in files
            if (pic := open_picture(f, 256)) is not None
        )
        if pics:
            figures.append(figure_html(f'<div class="strip">{pics}</div>', "generated (ONNX)"))
    if not figures:
        return ""
    return section_html(
        "images", "Data and generated images", f'<div class="row">{"".join(figures)}</div>'
    )
