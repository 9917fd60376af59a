"""The maintained 16-bit codecs: libpng through imagecodecs for every 16-bit PNG
(:func:`ganpipe.imaging.decode.decode_png16`, :func:`ganpipe.imaging.encode.encode_png16`),
and imagecodecs' LZW and JPEG codecs in tifffile for 16-bit TIFFs. Inputs are written by
real encoders: libpng (imagecodecs), PyPNG (Adam7 interlacing, tRNS colour keys) and
tifffile; outputs are read back by libpng, Pillow and tifffile."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import png  # PyPNG: an independent encoder that writes Adam7-interlaced 16-bit PNGs
import pytest
import tifffile
from PIL import Image, ImageCms
from test_upscale import OUT_NAME, _hand_model, _resize

from ganpipe.imaging.capture import collecting
from ganpipe.imaging.decode import decode_image
from ganpipe.imaging.encode import encode_image, encode_png16
from ganpipe.imaging.formats import TooLarge
from ganpipe.imaging.picture import Picture

#: PNG colour type per channel count
COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
#: lossless 16-bit JPEG, RGB (not YCbCr) in the TIFF
JPEG16 = {"lossless": True, "bitspersample": 16, "outcolorspace": "RGB"}


def _random(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def _planes(pic: Picture) -> np.ndarray:
    return pic.color if pic.alpha is None else np.dstack([pic.color, pic.alpha])


def _pypng(arr: np.ndarray, **kw) -> bytes:
    """``arr`` (uint16 HxWxC) as a 16-bit PNG written by PyPNG."""
    h, w, c = arr.shape
    buf = io.BytesIO()
    writer = png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=16, **kw)
    writer.write(buf, arr.reshape(h, w * c))
    return buf.getvalue()


def _ihdr(data: bytes) -> tuple[int, int, int]:
    """(bit depth, colour type, interlace method) of a PNG's header."""
    assert data[12:16] == b"IHDR"
    depth, ctype, _, _, interlace = struct.unpack(">BBBBB", data[24:29])
    return depth, ctype, interlace


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_round_trips_exactly(tmp_path, channels):
    """gray, gray+alpha, RGB, RGBA: read -> write -> read gives the same 16-bit arrays."""
    arr = _random((19, 23, channels), seed=channels)
    src = tmp_path / "in.png"
    src.write_bytes(imagecodecs.png_encode(arr if channels > 1 else arr[:, :, 0]))
    pic = decode_image(src)
    assert pic.bits == 16 and pic.format == "PNG"
    np.testing.assert_array_equal(_planes(pic), arr)
    encode_image(pic, tmp_path / "out.png", "PNG", 90, 6)
    data = (tmp_path / "out.png").read_bytes()
    assert _ihdr(data) == (16, COLOR_TYPE[channels], 0)
    np.testing.assert_array_equal(_planes(decode_image(tmp_path / "out.png")), arr)
    np.testing.assert_array_equal(imagecodecs.png_decode(data).reshape(arr.shape), arr)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_interlaced_16bit_png_keeps_16_bits(tmp_path, channels):
    arr = _random((13, 17, channels), seed=10 + channels)
    data = _pypng(arr, interlace=True)
    assert _ihdr(data) == (16, COLOR_TYPE[channels], 1)  # Adam7
    (tmp_path / "a.png").write_bytes(data)
    with collecting() as notes:
        pic = decode_image(tmp_path / "a.png")
    assert pic.bits == 16 and pic.color.dtype == np.uint16
    np.testing.assert_array_equal(_planes(pic), arr)
    assert notes == []  # libpng's remark on interlace handling is not the file's problem


def test_trns_colour_key_becomes_alpha_at_16_bits(tmp_path):
    rgb = _random((6, 8, 3), seed=3)
    key = (1000, 2000, 3000)
    rgb[1, 2] = rgb[4, 7] = key
    (tmp_path / "rgb.png").write_bytes(_pypng(rgb, transparent=key))
    gray = _random((5, 4, 1), seed=4)
    gray[0, 0] = gray[3, 1] = 77
    (tmp_path / "gray.png").write_bytes(_pypng(gray, transparent=(77,)))
    with Image.open(tmp_path / "rgb.png") as im:  # the file holds the key, as Pillow reads it
        assert im.info["transparency"] == key
    for name, arr, keyed in (("rgb", rgb, [(1, 2), (4, 7)]), ("gray", gray, [(0, 0), (3, 1)])):
        pic = decode_image(tmp_path / f"{name}.png")
        assert pic.bits == 16 and pic.alpha is not None and pic.alpha.dtype == np.uint16
        np.testing.assert_array_equal(pic.color, arr)
        expected = np.full(arr.shape[:2], 65535, np.uint16)
        for y, x in keyed:
            expected[y, x] = 0
        np.testing.assert_array_equal(pic.alpha, expected)


def _bad_idat_crc(data: bytes) -> bytes:
    """``data`` with the CRC of its first IDAT chunk off by one bit (the pixels intact)."""
    at = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    out = bytearray(data)
    out[at + 4 + length] ^= 0x01
    return bytes(out)


def test_crc_corrupted_16bit_png_fails_with_a_reason(tmp_path):
    data = imagecodecs.png_encode(_random((30, 40, 3), seed=5))
    (tmp_path / "crc.png").write_bytes(_bad_idat_crc(data))
    with pytest.raises(ValueError, match=r"^PNG file is corrupt \(IDAT: CRC error\)$"):
        decode_image(tmp_path / "crc.png")
    flipped = bytearray(data)
    flipped[data.index(b"IDAT") + 40] ^= 0xFF  # a byte of the compressed pixels
    (tmp_path / "data.png").write_bytes(bytes(flipped))
    # libpng's CRC check or zlib's Adler-32 check, whichever ends first: never garbage
    with pytest.raises(ValueError, match=r"^PNG file is corrupt \(IDAT: (CRC error|.*check)\)$"):
        decode_image(tmp_path / "data.png")


def test_truncated_16bit_png_fails_with_a_reason(tmp_path):
    data = imagecodecs.png_encode(_random((30, 40, 4), seed=6))
    (tmp_path / "a.png").write_bytes(data[: len(data) - 200])
    with pytest.raises(ValueError, match="^PNG file is truncated$"):
        decode_image(tmp_path / "a.png")


def test_size_limits_are_checked_on_the_header_before_decoding(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(imagecodecs.png_encode(_random((40, 50, 3))))

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(imagecodecs, "png_decode", no_decoding)
    with pytest.raises(TooLarge, match="megapixels"):
        decode_image(tmp_path / "a.png", max_pixels=1999)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 999)  # Pillow's bomb limit (2x: error)
    with pytest.raises(Image.DecompressionBombError):
        decode_image(tmp_path / "a.png")


def test_icc_and_exif_survive_the_16bit_write(tmp_path):
    icc = _srgb()
    exif = Image.Exif()
    exif[0x010F] = "camera"
    exif[0x0110] = "model 16"
    arr = _random((9, 11, 4), seed=7)
    for raw in (exif.tobytes(), exif.tobytes()[6:]):  # with and without "Exif\0\0"
        (tmp_path / "a.png").write_bytes(encode_png16(arr, icc=icc, exif=raw))
        with Image.open(tmp_path / "a.png") as im:
            assert im.info["icc_profile"] == icc
            got = im.getexif()
            assert got[0x010F] == "camera" and got[0x0110] == "model 16"
        data = (tmp_path / "a.png").read_bytes()
        np.testing.assert_array_equal(imagecodecs.png_decode(data), arr)  # CRCs all valid
        pic = decode_image(tmp_path / "a.png")
        assert pic.icc == icc and pic.exif is not None and b"camera" in pic.exif


def test_pillow_never_decodes_a_16bit_png(tmp_path, monkeypatch):
    """Pillow reads the header, ICC and EXIF only - also an eXIf chunk after the pixel
    data, which its own getexif() decodes the whole image (at 8 bits) to find."""
    from PIL import ImageFile

    arr = _random((5, 8, 3), seed=9)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees clockwise
    exif[0x010F] = "camera"
    data = imagecodecs.png_encode(arr)
    body = exif.tobytes()[6:]
    late = struct.pack(">I", len(body)) + b"eXIf" + body
    late += struct.pack(">I", zlib.crc32(b"eXIf" + body))
    (tmp_path / "late.png").write_bytes(data[:-12] + late + data[-12:])  # before IEND

    def no_loading(im):
        raise AssertionError("Pillow decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_loading)
    pic = decode_image(tmp_path / "late.png")
    np.testing.assert_array_equal(pic.color, np.rot90(arr, -1))
    kept = Image.Exif()
    kept.load(pic.exif)
    assert kept[0x010F] == "camera" and 0x0112 not in kept  # applied, so not carried


def test_encode_png16_refuses_what_png_cannot_hold():
    for arr in (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 5), np.uint16)):
        with pytest.raises(ValueError, match="16-bit PNG"):
            encode_png16(arr)
    with pytest.raises(ValueError, match="16-bit PNG"):
        encode_png16(np.zeros((0, 4, 3), np.uint16))


def _tiffs(folder: Path) -> dict[str, np.ndarray]:
    """16-bit TIFFs that need imagecodecs' codecs: LZW (RGB, RGBA, gray+alpha), lossless
    16-bit JPEG (RGB)."""
    rgb = np.linspace(0, 65535, 9 * 14 * 3).astype(np.uint16).reshape(9, 14, 3)
    rgba = np.dstack([rgb, _random((9, 14), seed=8)])
    cases = {
        "rgb_lzw.tif": (rgb, {"compression": "lzw", "predictor": True, "photometric": "rgb"}),
        "rgba_lzw.tif": (rgba, {"compression": "lzw", "photometric": "rgb"}),
        "ga_lzw.tif": (rgba[:, :, [0, 3]], {"compression": "lzw", "photometric": "minisblack"}),
        "rgb_jpeg.tif": (
            rgb,
            {"compression": "jpeg", "compressionargs": dict(JPEG16), "photometric": "rgb"},
        ),
    }
    for name, (arr, kw) in cases.items():
        extra = ("unassalpha",) if arr.shape[2] in (2, 4) else None
        tifffile.imwrite(folder / name, arr, extrasamples=extra, metadata=None, **kw)
    return {name: arr for name, (arr, _) in cases.items()}


def test_lzw_and_jpeg_16bit_tiffs_decode_at_16_bits(tmp_path):
    for name, arr in _tiffs(tmp_path).items():
        with tifffile.TiffFile(tmp_path / name) as tif:
            page = tif.pages.first
            assert page.bitspersample == 16 and page.compression in (5, 7), name
        pic = decode_image(tmp_path / name)
        assert pic.bits == 16 and pic.format == "TIFF", name
        np.testing.assert_array_equal(_planes(pic), arr)


def test_upscale_cli_writes_16bit_outputs(tmp_path, cli):
    src = tmp_path / "in"
    src.mkdir()
    rgb = _random((6, 7, 3), seed=20)
    rgba = _random((6, 7, 4), seed=21)
    (src / "rgb.png").write_bytes(imagecodecs.png_encode(rgb))
    (src / "interlaced.png").write_bytes(_pypng(rgba, interlace=True))
    keyed = rgb.copy()
    keyed[2, 3] = (5, 6, 7)
    (src / "trns.png").write_bytes(_pypng(keyed, transparent=(5, 6, 7)))
    exif = Image.Exif()
    exif[0x010F] = "camera"
    icc = _srgb()
    (src / "meta.png").write_bytes(encode_png16(rgb, icc=icc, exif=exif.tobytes()))
    (src / "corrupt.png").write_bytes(_bad_idat_crc(imagecodecs.png_encode(rgb)))
    tiffs = _tiffs(src)
    model = _hand_model(tmp_path / "x2.onnx", *_resize("image", OUT_NAME, 2), 2)  # exact
    proc = cli("upscale", "-i", str(src), "-o", str(tmp_path / "out"), "-m", str(model),
               "--device", "cpu", "--metadata", "keep")  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("ganpipe: failed: ")]
    assert len(failed) == 1 and "corrupt.png" in failed[0] and "CRC error" in failed[0], failed
    out = tmp_path / "out"

    def x2(a: np.ndarray) -> np.ndarray:
        return a.repeat(2, axis=0).repeat(2, axis=1)

    def png16(name: str) -> np.ndarray:
        data = (out / name).read_bytes()
        assert _ihdr(data)[0] == 16, name
        return imagecodecs.png_decode(data)

    np.testing.assert_array_equal(png16("rgb.png"), x2(rgb))
    np.testing.assert_array_equal(png16("interlaced.png"), x2(rgba))
    alpha = np.full((6, 7), 65535, np.uint16)
    alpha[2, 3] = 0
    got = png16("trns.png")
    np.testing.assert_array_equal(got[:, :, 3], x2(alpha))
    visible = x2(alpha) > 0
    np.testing.assert_array_equal(got[:, :, :3][visible], x2(keyed)[visible])
    np.testing.assert_array_equal(png16("meta.png"), x2(rgb))
    with Image.open(out / "meta.png") as im:
        assert im.info["icc_profile"] == icc and im.getexif()[0x010F] == "camera"
    for name, arr in tiffs.items():
        got = tifffile.imread(out / name)
        assert got.dtype == np.uint16, name
        got = got if got.ndim == 3 else got[:, :, None]
        if arr.shape[2] in (2, 4):  # colour under alpha 0 is free; alpha exact
            visible = x2(arr)[:, :, -1] > 0
            np.testing.assert_array_equal(got[:, :, -1], x2(arr)[:, :, -1])
            np.testing.assert_array_equal(got[visible], x2(arr)[visible])
        else:
            np.testing.assert_array_equal(got, x2(arr))
