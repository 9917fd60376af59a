"""16-bit RGB(A) and gray+alpha TIFFs (:mod:`ganpipe.imaging.tiff16`): real files written
by the module itself, by tifffile (big-endian, planar, tiled, premultiplied alpha), by
Pillow, and by hand (PackBits, and a compression tifffile is made to lack). LZW and JPEG
(imagecodecs' codecs) are in tests/test_codecs.py."""

from __future__ import annotations

import struct
import subprocess
import sys

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from ganpipe.imaging.tiff16 import encode_tiff16, read_tiff16, tiff16_needed


def _random(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _hand_tiff(arr: np.ndarray, compression: int, strip: bytes) -> bytes:
    """A little-endian single-strip 16-bit RGB TIFF whose strip is ``strip`` as given."""
    h, w, c = arr.shape
    entries = [
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, c, None),
        (259, 3, 1, compression),
        (262, 3, 1, 2),
        (273, 4, 1, None),
        (277, 3, 1, c),
        (278, 4, 1, h),
        (279, 4, 1, len(strip)),
    ]
    bps_at = 8 + 2 + 12 * len(entries) + 4
    strip_at = bps_at + 2 * c
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {258: bps_at, 273: strip_at}.get(tag, value)
        short = kind == 3 and count == 1
        ifd += struct.pack("<HHI", tag, kind, count)
        ifd += struct.pack("<HH", value, 0) if short else struct.pack("<I", value)
    bps = struct.pack(f"<{c}H", *[16] * c)
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + bps + strip


def _packbits(data: bytes) -> bytes:
    """PackBits: 128-byte blocks, a replicate run where a block is one repeated byte."""
    out = bytearray()
    for i in range(0, len(data), 128):
        block = data[i : i + 128]
        if len(set(block)) == 1:
            out += bytes([257 - len(block), block[0]])
        else:
            out += bytes([len(block) - 1]) + block
    return bytes(out)


def _no_decoding(*args, **kwargs):
    raise AssertionError("pixel data was decoded")


@pytest.mark.parametrize("channels", [3, 4])
def test_rgb48_and_rgba64_round_trip_exactly(tmp_path, channels):
    arr = _random((37, 53, channels), seed=channels)
    path = tmp_path / "a.tif"
    path.write_bytes(encode_tiff16(arr))
    assert tiff16_needed(path)
    got, info = read_tiff16(path)
    assert got.dtype == np.uint16 and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)
    assert info.icc is None and info.orientation == 1
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.bitspersample == 16 and page.photometric == 2
        assert page.extrasamples == ((2,) if channels == 4 else ())
    with Image.open(path) as im:  # Pillow reads it (at 8 bits)
        assert im.mode == ("RGBA" if channels == 4 else "RGB") and im.size == (53, 37)
        assert np.abs(np.asarray(im, dtype=np.float64) - arr / 257).max() <= 1


def test_gray_and_gray_alpha_round_trip(tmp_path):
    gray, gray_alpha = _random((20, 30), seed=1), _random((20, 30, 2), seed=2)
    (tmp_path / "g.tif").write_bytes(encode_tiff16(gray))
    (tmp_path / "ga.tif").write_bytes(encode_tiff16(gray_alpha))
    with Image.open(tmp_path / "g.tif") as im:  # plain 16-bit gray stays Pillow's
        assert im.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(im), gray)
    assert not tiff16_needed(tmp_path / "g.tif")
    assert tiff16_needed(tmp_path / "ga.tif")  # Pillow has no 16-bit gray+alpha mode
    got, _ = read_tiff16(tmp_path / "ga.tif")
    np.testing.assert_array_equal(got, gray_alpha)


def test_icc_profile_round_trip(tmp_path):
    icc = _srgb()
    path = tmp_path / "a.tif"
    path.write_bytes(encode_tiff16(_random((8, 9, 3)), icc=icc))
    _, info = read_tiff16(path)
    assert info.icc == icc
    with Image.open(path) as im:
        assert im.info.get("icc_profile") == icc


@pytest.mark.parametrize(
    ("byteorder", "planar", "compression", "tile"),
    [
        (">", "contig", None, None),
        (">", "separate", "zlib", None),
        ("<", "separate", None, (16, 16)),
        (">", "contig", "zlib", (16, 16)),
    ],
)
@pytest.mark.parametrize("channels", [3, 4])
def test_reads_files_written_by_tifffile(tmp_path, byteorder, planar, compression, tile, channels):
    arr = _random((45, 38, channels), seed=7)
    data = np.moveaxis(arr, -1, 0) if planar == "separate" else arr
    path = tmp_path / "a.tif"
    tifffile.imwrite(
        path,
        data,
        byteorder=byteorder,
        photometric="rgb",
        planarconfig=planar,
        extrasamples=("unassalpha",) if channels == 4 else None,
        compression=compression,
        predictor=compression is not None,
        tile=tile,
        rowsperstrip=None if tile else 8,
        metadata=None,
    )
    assert tiff16_needed(path)
    got, _ = read_tiff16(path)
    assert got.dtype == np.dtype(np.uint16) and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


def test_reads_packbits(tmp_path):
    arr = _random((6, 64, 3), seed=3)
    arr[:2] = 0x1111  # whole 128-byte blocks of one byte: replicate runs
    path = tmp_path / "a.tif"
    path.write_bytes(_hand_tiff(arr, 32773, _packbits(arr.astype("<u2").tobytes())))
    assert tiff16_needed(path)
    got, _ = read_tiff16(path)
    np.testing.assert_array_equal(got, arr)


def test_a_compression_without_a_codec_is_named(tmp_path, monkeypatch):
    """imagecodecs (a dependency) gives tifffile LZW, JPEG...; a compression that no
    installed codec decodes is named, before any pixel is decoded."""
    path = tmp_path / "a.tif"
    path.write_bytes(_hand_tiff(_random((4, 5, 3)), 5, b"\x80\x00" * 20))  # LZW
    assert tiff16_needed(path)
    assert 5 in tifffile.TIFF.DECOMPRESSORS  # imagecodecs' LZW
    monkeypatch.setattr(tifffile.TIFF, "DECOMPRESSORS", {1: None, 8: None, 32946: None})
    monkeypatch.setattr(tifffile.TiffPage, "asarray", _no_decoding)
    with pytest.raises(ValueError, match="LZW.*imagecodecs"):
        read_tiff16(path)


def test_orientation_is_reported(tmp_path):
    arr = _random((5, 7, 3))
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, arr, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    got, info = read_tiff16(path)
    assert info.orientation == 6
    np.testing.assert_array_equal(got, arr)  # not applied: the caller does it


def test_premultiplied_alpha_is_divided_out_and_padding_dropped(tmp_path):
    straight = _random((4, 6, 3), seed=5)
    alpha = np.array([0, 65535, 32768, 65535, 32768, 0], np.uint16)[None, :, None]
    alpha = np.broadcast_to(alpha, (4, 6, 1))
    premul = np.round(straight * (alpha / 65535)).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "assoc.tif",
        np.concatenate([premul, alpha], axis=2),
        photometric="rgb",
        extrasamples=("assocalpha",),
    )
    got, _ = read_tiff16(tmp_path / "assoc.tif")
    assert got.shape == (4, 6, 4)
    np.testing.assert_array_equal(got[:, :, 3:], alpha)
    visible = np.broadcast_to(alpha > 0, straight.shape)
    assert np.abs(got[:, :, :3].astype(int) - straight)[visible].max() <= 2
    assert not got[:, :, :3][~visible].any()
    tifffile.imwrite(
        tmp_path / "pad.tif",
        np.concatenate([straight, alpha], axis=2),
        photometric="rgb",
        extrasamples=("unspecified",),
    )
    got, _ = read_tiff16(tmp_path / "pad.tif")
    np.testing.assert_array_equal(got, straight)


def test_tiff16_needed_only_for_what_pillow_reduces(tmp_path):
    rgb16 = _random((6, 5, 3))
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    Image.fromarray((rgb16 >> 8).astype(np.uint8), "RGB").save(tmp_path / "rgb8.tif")
    Image.fromarray(rgb16[:, :, 0]).save(tmp_path / "gray16.tif")  # I;16
    (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(rgb16))
    (tmp_path / "junk.tif").write_bytes(b"II*\0" + b"\xff" * 40)
    assert tiff16_needed(tmp_path / "rgb16.tif")
    for name in ("rgb8.tif", "gray16.tif", "rgb16.png", "junk.tif", "missing.tif"):
        assert not tiff16_needed(tmp_path / name), name


def test_decompression_bomb_limit_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "a.tif"
    path.write_bytes(encode_tiff16(_random((20, 30, 3))))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 599)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", _no_decoding)
    with pytest.raises(Image.DecompressionBombError, match="600 pixels.*limit of 599"):
        read_tiff16(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
    with pytest.raises(ValueError, match="pixel data was decoded"):  # at the limit
        read_tiff16(path)


def test_truncated_files_raise(tmp_path):
    data = encode_tiff16(_random((40, 50, 4)))
    path = tmp_path / "a.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="TIFF file is truncated"):
        read_tiff16(path)
    for cut in (6, 30, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises((ValueError, OSError)):
            read_tiff16(path)


def test_corrupt_compressed_data_raises_value_error(tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(encode_tiff16(_random((40, 50, 3))))
    with tifffile.TiffFile(path) as tif:
        start = tif.pages.first.dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[start : start + 64] = bytes(range(64))
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        read_tiff16(path)


def test_encode_rejects_what_it_cannot_write():
    with pytest.raises(ValueError, match="16-bit TIFF"):
        encode_tiff16(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="16-bit TIFF"):
        encode_tiff16(np.zeros((4, 4, 5), np.uint16))


def test_does_not_import_torch():
    code = "import sys, ganpipe.imaging.tiff16; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
