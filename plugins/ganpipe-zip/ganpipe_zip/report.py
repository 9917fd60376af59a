"""The "Zip archive" section of a run's report.html, for runs trained from an archive
(``[data] dataset = "zip"``): the archive, its classes and image counts and the members
skipped, read from its central directory as it is now. Added by the plugin's
``ganpipe_report_sections`` hook, with the report's own helpers (texts escaped)."""

from __future__ import annotations

from typing import Any

from ganpipe_zip.source import ZipOptions, archive_path
from ganpipe_zip.summary import summarize

#: skipped members listed in the section at most
MOST_SKIPPED = 20


def archive_section(report: Any) -> None:
    """Add the section when the run's data came from a zip archive."""
    data = report.run.table("data")
    if data.get("dataset") != "zip":
        return
    keys = {k: v for k, v in data.items() if k in ZipOptions.model_fields}
    opts = ZipOptions.model_validate(keys)
    summary = summarize(archive_path(opts, report.run.base_dir), opts)
    blocks = [
        report.key_values(
            {
                "archive": str(summary.path),
                "size (MB)": round(summary.size_bytes / 2**20, 2),
                "image members": summary.images,
                "classes": len(summary.classes),
                "members skipped": len(summary.skipped),
            }
        ),
        report.table(["class", "images"], summary.classes.items()),
    ]
    if summary.skipped:
        shown = summary.skipped[:MOST_SKIPPED]
        blocks.append(report.table(["skipped member", "why"], shown))
    report.add(
        "Zip archive",
        *blocks,
        note="read from the archive's central directory as it is now (nothing extracted)",
    )
