"""HTML helpers of the run report. Every text that reaches the page goes through
:func:`esc` (``html.escape``); the helpers take plain text unless their name says html."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def number(value: Any) -> str:
    """A value for a table cell: numbers compact, the rest as text (escaped)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return esc(value)
        a = abs(value)
        if a != 0 and (a < 1e-3 or a >= 1e6):
            return f"{value:.3e}"
        return f"{value:.4g}" if a < 100 else f"{value:,.1f}"
    return esc(compact(value))


def compact(value: Any, most: int = 8) -> str:
    """A short one-line text of a JSON-like value."""
    if isinstance(value, dict):
        items = [f"{k} {compact(v, most)}" for k, v in list(value.items())[:most]]
        more = f", … ({len(value) - most} more)" if len(value) > most else ""
        return ", ".join(items) + more
    if isinstance(value, list | tuple):
        items = [compact(v, most) for v in value[:most]]
        more = f", … ({len(value) - most} more)" if len(value) > most else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def table_html(
    head: Sequence[str], rows: Iterable[Sequence[str]], *, css: str = "", numeric_from: int = 1
) -> str:
    """A table; ``head`` is text, the cells of ``rows`` are html (escape them first).
    Columns from ``numeric_from`` on are right-aligned."""
    klass = f' class="{css}"' if css else ""
    out = [f"<table{klass}><thead><tr>"]
    for i, h in enumerate(head):
        out.append(f"<th{' class=n' if i >= numeric_from else ''}>{esc(h)}</th>")
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            out.append(f"<td{' class=n' if i >= numeric_from else ''}>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def key_values_html(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of ``(key, value)``, values formatted by :func:`number`."""
    rows = [f"<tr><th>{esc(k)}</th><td>{number(v)}</td></tr>" for k, v in items]
    return f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def section_html(anchor: str, title: str, body_html: str, *, note: str = "") -> str:
    extra = f'<p class="note">{esc(note)}</p>' if note else ""
    return (
        f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{extra}{body_html}</section>'
        if body_html or note
        else ""
    )


def figure_html(body_html: str, caption: str) -> str:
    return f"<figure>{body_html}<figcaption>{esc(caption)}</figcaption></figure>"
