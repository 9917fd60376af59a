"""What metadata outputs carry: ``--metadata keep|no-gps|strip`` (default ``no-gps``).

* ``keep`` - the source's ICC profile and EXIF as they are;
* ``no-gps`` - the ICC profile, and the EXIF without its GPS block (the GPSInfo IFD: where
  the photo was taken). An EXIF block that cannot be parsed is dropped whole, with a
  warning, since its location tags could not be removed;
* ``strip`` - only the ICC profile (it is needed to show the colours right).

XMP and text chunks are not carried over by any policy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from PIL import Image

from ganpipe.imaging.picture import Picture

MetadataPolicy = Literal["keep", "no-gps", "strip"]
#: the EXIF tag that points to the GPS IFD
GPS_IFD = 0x8825


def without_gps(exif: bytes) -> bytes:
    """``exif`` (as Pillow reads it from a file) without the GPS IFD; raises when the
    block cannot be parsed."""
    parsed = Image.Exif()
    parsed.load(exif)
    if GPS_IFD not in parsed:
        return exif
    del parsed[GPS_IFD]
    return parsed.tobytes()


def apply_policy(pic: Picture, policy: MetadataPolicy) -> tuple[Picture, list[str]]:
    """``pic`` with the metadata ``policy`` allows, and the warnings on the way."""
    if policy == "keep" or not pic.exif:
        return pic, []
    if policy == "strip":
        return replace(pic, exif=None), []
    try:
        return replace(pic, exif=without_gps(pic.exif)), []
    except Exception as exc:  # noqa: BLE001 - malformed EXIF: many kinds of errors
        note = f"EXIF dropped: cannot remove its location tags ({type(exc).__name__})"
        return replace(pic, exif=None), [note]
