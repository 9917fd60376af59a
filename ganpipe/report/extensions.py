"""Sections plugins add to the run report (hook ``ganpipe_report_sections``, since 0.3).

Each plugin's hook receives its own :class:`ReportSections`: ``report.run`` is the run
(:class:`~ganpipe.report.run.RunRecord`: manifest, recorded pipeline.toml, stages and
their outputs), ``report.add(title, *blocks, note=...)`` adds a section, and the blocks
are made by the helpers beside it (``text``, ``key_values``, ``table``, ``code``,
``image``), which escape every text: a plugin cannot put raw HTML on the page. A hook that
raises (or exits) costs only its own section, which becomes a one-line note naming the
plugin; the rest of the report is written as usual. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ganpipe.report.markup import esc, figure_html, key_values_html, number, table_html

__all__ = ["Html", "ReportSections", "plugin_sections"]


class Html(str):
    """Markup made by the helpers of :class:`ReportSections` (its texts escaped): put on
    the page as it is. A plain ``str`` given to :meth:`ReportSections.add` is escaped."""


class ReportSections:
    """What ``ganpipe_report_sections`` receives: the run, and where to add sections."""

    def __init__(self, run: Any, owner: str = "", dist: str = ""):
        self.run = run
        self.owner, self.dist = owner, dist
        #: (anchor, title, html) of the sections added, in order
        self.sections: list[tuple[str, str, str]] = []

    # -- sections ------------------------------------------------------------------------
    def add(self, title: str, *blocks: Html | str, note: str = "") -> None:
        """A section titled ``title`` with ``blocks`` (from the helpers below; a plain
        string is a paragraph of text) and an optional one-line ``note`` under the title."""
        if not isinstance(title, str) or not title.strip():
            raise ValueError("a report section needs a title (a non-empty string)")
        parts = []
        for block in blocks:
            if isinstance(block, Html):
                parts.append(str(block))
            elif isinstance(block, str):
                parts.append(self.text(block))
            else:
                raise TypeError(
                    f"report section {title!r}: a block must be made by report.text, "
                    f"key_values, table, code or image, not {type(block).__name__}"
                )
        anchor = f"plugin-{self.owner}-{len(self.sections) + 1}"
        origin = f"from plugin {self.owner}" if self.owner else ""
        note = " · ".join(p for p in (note.strip(), origin) if p)
        html = f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>'
        html += f'<p class="note">{esc(note)}</p>' if note else ""
        self.sections.append((anchor, title, html + "".join(parts) + "</section>"))

    # -- blocks --------------------------------------------------------------------------
    @staticmethod
    def text(text: str) -> Html:
        """A paragraph of plain text."""
        return Html(f"<p>{esc(text)}</p>")

    @staticmethod
    def key_values(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Html:
        """A two-column table of names and values (numbers formatted compactly)."""
        pairs = items.items() if isinstance(items, Mapping) else items
        return Html(key_values_html((str(k), v) for k, v in pairs))

    @staticmethod
    def table(head: Iterable[str], rows: Iterable[Iterable[Any]]) -> Html:
        """A table with the header ``head``; cells are values (numbers right-aligned)."""
        head = [str(h) for h in head]
        cells = [[number(v) for v in row] for row in rows]
        return Html(table_html(head, cells, numeric_from=1))

    @staticmethod
    def code(text: str) -> Html:
        """Preformatted text (a log, a config)."""
        return Html(f"<pre>{esc(text)}</pre>")

    @staticmethod
    def image(picture: Any, caption: str = "", *, width: int | None = None) -> Html:
        """A picture inlined in the page: a path to an image file, a PIL image or a uint8
        ``(H, W, C)`` array; an unreadable file is a short note instead."""
        from ganpipe.report.images import img_tag, open_picture

        if isinstance(picture, str | Path):
            picture = open_picture(Path(picture))
        return Html(figure_html(img_tag(picture, caption or "image", width=width), caption))


def plugin_sections(record: Any, entry_points: bool = True) -> list[tuple[str, str, str]]:
    """``(anchor, title, html)`` of every section the plugins add for ``record``. A plugin
    whose hook raises gets a one-line note in place of its section; plugins that cannot
    be loaded at all, one note for all."""
    from ganpipe.hookcall import calls
    from ganpipe.plugins import get_plugin_manager, problems_of

    pm = get_plugin_manager(entry_points=entry_points, strict=False)
    out = [  # a broken plugin costs only its own sections
        _note(f"broken-{name}", "Plugins", f"plugin sections not shown: {problem}")
        for name, problem in problems_of(pm).items()
    ]
    for call in calls(pm, "ganpipe_report_sections"):
        report = ReportSections(record, call.owner, call.dist)
        try:
            call(report=report)
        except Exception as exc:  # noqa: BLE001 - a plugin's section never costs the report
            anchor = f"plugin-{call.owner}-{len(report.sections) + 1}"
            report.sections.append(
                _note(anchor, f"Plugin {call.owner}", f"a section could not be shown: {exc}")
            )
        out.extend(report.sections)
    return out


def _note(anchor: str, title: str, text: str) -> tuple[str, str, str]:
    from ganpipe.errors import one_line

    text = one_line(text)
    html = f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2><p class="note">{esc(text)}</p>'
    return anchor, title, html + "</section>"
