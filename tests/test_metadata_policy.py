"""--metadata keep|no-gps|strip: what the outputs carry of the sources' metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image, ImageCms

from ganpipe.imaging.metadata import GPS_IFD, apply_policy, without_gps
from ganpipe.imaging.picture import Picture

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(gps: bool = True) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "ganpipe camera"  # Make
    if gps:
        block = exif.get_ifd(GPS_IFD)
        block[1], block[2] = "N", (52.0, 31.0, 12.5)
    return exif.tobytes()


def _read(path):
    with Image.open(path) as im:
        exif = im.getexif()
        return dict(exif), exif.get_ifd(GPS_IFD), im.info.get("icc_profile")


@pytest.fixture
def photo(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    arr = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(src / "p.jpg", exif=_exif(), icc_profile=SRGB, quality=95)
    Image.fromarray(arr).save(src / "q.png", exif=_exif(), icc_profile=SRGB)
    return src


@pytest.mark.parametrize(
    ("policy", "make", "gps"),
    [(None, True, False), ("no-gps", True, False), ("keep", True, True), ("strip", False, False)],
)
def test_policies_through_the_cli(tmp_path, photo, policy, make, gps, sr_x2_onnx):
    out = tmp_path / f"out-{policy}"
    args = ["upscale", "-i", str(photo), "-o", str(out), "-m", str(sr_x2_onnx), "--device", "cpu"]
    proc = run_cli(*args, *(["--metadata", policy] if policy else []))
    assert proc.returncode == 0, proc.stderr
    for name in ("p.jpg", "q.png"):
        tags, gps_tags, icc = _read(out / name)
        assert (tags.get(0x010F) == "ganpipe camera") is make, name
        assert bool(gps_tags) is gps, name
        assert icc == SRGB, name  # every policy keeps the ICC profile


def test_malformed_exif_is_dropped_with_a_warning_never_the_image():
    pic = Picture(np.zeros((2, 2, 3), np.uint8), exif=b"Exif\x00\x00garbage that is no TIFF")
    out, notes = apply_policy(pic, "no-gps")
    assert out.exif is None and len(notes) == 1 and "location tags" in notes[0]
    kept, none = apply_policy(pic, "keep")
    assert kept.exif == pic.exif and none == []


def test_without_gps_leaves_an_exif_without_location_as_it_is():
    plain = _exif(gps=False)
    assert without_gps(plain) == plain
    parsed = Image.Exif()
    parsed.load(without_gps(_exif()))
    assert GPS_IFD not in parsed and parsed[0x010F] == "ganpipe camera"


@pytest.fixture(scope="module")
def sr_x2_onnx(compact_x2_onnx):
    return compact_x2_onnx


def test_png_exif_round_trip_helper():
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, "PNG", exif=_exif())
    buf.seek(0)
    assert Image.open(buf).getexif().get_ifd(GPS_IFD)
