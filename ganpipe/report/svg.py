"""Small inline SVG charts for the run report: line plots (training curves) and grouped bar
charts (evaluation scores). Dependency-free; every text is escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

#: series colours (colour-blind safe, Okabe-Ito)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
WIDTH, HEIGHT = 360, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 28, 36
#: curves with at least this many points get a smoothed line over the faint raw one
SMOOTH_FROM = 20


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, v = [], first
    while v <= hi + step * 1e-6:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 12))
    return ticks


def fmt(value: float) -> str:
    """A compact label for a tick or a value."""
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 10_000 or a < 0.001:
        return f"{value:.2g}"
    if a >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def smooth(values: Sequence[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average (TensorBoard-style, bias-corrected)."""
    out, acc, norm = [], 0.0, 0.0
    for v in values:
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(acc / norm)
    return out


def _frame(title: str, xlabel: str, ylabel: str) -> list[str]:
    label = escape(title)
    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{label}">',
        f"<title>{label}</title>",
        f'<text x="{LEFT}" y="16" class="t">{label}</text>',
    ]
    if xlabel:
        parts.append(
            f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" class="a" '
            f'text-anchor="middle">{escape(xlabel)}</text>'
        )
    if ylabel:
        parts.append(
            f'<text x="{WIDTH - RIGHT}" y="16" class="a" text-anchor="end">{escape(ylabel)}</text>'
        )
    return parts


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    *,
    xlabel: str = "step",
    ylabel: str = "",
    reference: tuple[float, str] | None = None,
    smoothed: bool = False,
) -> str:
    """One SVG chart of ``{name: (xs, ys)}``; non-finite points are left out. ``reference``:
    a dashed horizontal line (value, label). ``smoothed``: raw lines faint, EMA on top."""
    clean = {}
    for name, (xs, ys) in series.items():
        pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=False)]
        pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        if pts:
            clean[name] = pts
    parts = _frame(title, xlabel, ylabel)
    if not clean:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="a">no data</text></svg>')
        return "".join(parts)
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts]
    if reference is not None:
        ys.append(reference[0])
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    xt = [t for t in nice_ticks(x0, x1) if x0 - 1e-9 <= t <= x1 + 1e-9]  # the data's span
    yt = nice_ticks(min(ys), max(ys))
    y0, y1 = yt[0], yt[-1]
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1) * pw

    def py(y: float) -> float:
        return TOP + ph - (y - y0) / ((y1 - y0) or 1) * ph

    for y in yt:
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" class="g"/>'
            f'<text x="{LEFT - 5}" y="{py(y) + 3.5:.1f}" class="a" text-anchor="end">'
            f"{fmt(y)}</text>"
        )
    for x in xt:
        parts.append(
            f'<text x="{px(x):.1f}" y="{TOP + ph + 14}" class="a" text-anchor="middle">'
            f"{fmt(x)}</text>"
        )
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" class="f"/>')
    if reference is not None:
        value, label = reference
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(value):.1f}" y2="{py(value):.1f}" '
            f'class="r"/><text x="{LEFT + pw - 3}" y="{py(value) + 12:.1f}" class="a" '
            f'text-anchor="end">{escape(label)}</text>'
        )
    for i, (name, pts) in enumerate(clean.items()):
        colour = PALETTE[i % len(PALETTE)]
        lines = [pts]
        if smoothed and len(pts) >= SMOOTH_FROM:
            lines = [pts, list(zip([x for x, _ in pts], smooth([y for _, y in pts]), strict=True))]
        for j, line in enumerate(lines):
            faint = smoothed and len(lines) == 2 and j == 0
            d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in line)
            opacity = ' stroke-opacity="0.3"' if faint else ""
            parts.append(
                f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="1.6"'
                f"{opacity}><title>{escape(name)}</title></polyline>"
            )
        if len(pts) == 1:
            parts.append(
                f'<circle cx="{px(pts[0][0]):.1f}" cy="{py(pts[0][1]):.1f}" r="3" fill="{colour}"/>'
            )
    parts.extend(_legend(list(clean)))
    parts.append("</svg>")
    return "".join(parts)


def _legend(names: list[str]) -> list[str]:
    if len(names) < 2:
        return []
    out, x = [], LEFT + 6
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        out.append(
            f'<rect x="{x}" y="{TOP + 6}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{x + 13}" y="{TOP + 10}" class="a">{escape(name)}</text>'
        )
        x += 22 + 6 * len(name)
    return out


def bar_plot(
    groups: Sequence[str], series: dict[str, Sequence[float]], title: str, *, ylabel: str = ""
) -> str:
    """Grouped bars: one group per ``groups`` label, one bar per series in each."""
    parts = _frame(title, "", ylabel)
    values = [float(v) for vs in series.values() for v in vs if math.isfinite(float(v))]
    if not groups or not values:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="a">no data</text></svg>')
        return "".join(parts)
    yt = nice_ticks(min(0.0, min(values)), max(0.0, max(values)))
    y0, y1 = yt[0], yt[-1]
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def py(y: float) -> float:
        return TOP + ph - (y - y0) / ((y1 - y0) or 1) * ph

    for y in yt:
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" class="g"/>'
            f'<text x="{LEFT - 5}" y="{py(y) + 3.5:.1f}" class="a" text-anchor="end">'
            f"{fmt(y)}</text>"
        )
    slot = pw / len(groups)
    bar = slot * 0.8 / max(1, len(series))
    for g, label in enumerate(groups):
        cx = LEFT + slot * (g + 0.5)
        text = label if len(label) <= 12 else label[:11] + "…"
        parts.append(
            f'<text x="{cx:.1f}" y="{TOP + ph + 14}" class="a" text-anchor="middle">'
            f"{escape(text)}</text>"
        )
        for s, (name, vs) in enumerate(series.items()):
            v = float(vs[g]) if g < len(vs) else math.nan
            if not math.isfinite(v):
                continue
            x = LEFT + slot * g + slot * 0.1 + bar * s
            top, base = py(max(v, 0.0)), py(min(v, 0.0))
            parts.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{bar * 0.92:.1f}" '
                f'height="{max(0.5, base - top):.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                f"<title>{escape(f'{label} {name}: {fmt(v)}')}</title></rect>"
            )
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" class="f"/>')
    parts.extend(_legend(list(series)))
    parts.append("</svg>")
    return "".join(parts)
