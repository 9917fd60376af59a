"""How an upscaled video is encoded: the encoder, its pixel format, quality and speed
(``--video-codec``, ``--crf``, ``--preset``, ``--pix-fmt``), chosen once per video.

**Codec.** ``--video-codec`` names a codec (``h264``, ``hevc`` / ``h265``, ``vp9``,
``av1``, ``ffv1``, ``prores``) or an FFmpeg encoder (``libx264``...). Without it: the
source's codec where this FFmpeg has an encoder for it and the container takes it (H.264,
HEVC, VP9, AV1, FFV1, ProRes), else H.264 (VP9 in WebM). ``ffv1`` is lossless (Matroska).

**Pixel format.** ``--pix-fmt``, else 4:2:0 at the source's depth: 10-bit sources stay
10-bit (``yuv420p10le``) where the encoder takes it (libx264, libx265, SVT-AV1, FFV1;
this build's libvpx-vp9 is 8-bit only, so VP9 is 8-bit), and 8-bit sources are
``yuv420p``.

**Even sizes.** 4:2:0 and 4:2:2 formats halve the chroma planes, so their encoders need an
even width (and 4:2:0 an even height): an odd output side is padded by one pixel, repeating
the last row or column, and the record says so. Upscaling x2 or x4 always gives even sides;
odd ones come from ``--outscale`` or scale-1 (translate) models.

**Quality.** ``--crf`` (lower is better; x264 / x265 default 23 / 28, VP9 32, AV1 35);
``--preset`` is the encoder's speed preset (x264 / x265 ``ultrafast`` ... ``veryslow``,
SVT-AV1 ``0`` ... ``13``; VP9's ``cpu-used`` 0 ... 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ganpipe.errors import ConfigError

__all__ = ["Encoding", "check_options", "choose_encoding", "encoder_name"]

#: codec names users type -> FFmpeg encoders
ALIASES = {
    "h264": "libx264",
    "x264": "libx264",
    "avc": "libx264",
    "hevc": "libx265",
    "h265": "libx265",
    "x265": "libx265",
    "vp9": "libvpx-vp9",
    "av1": "libsvtav1",
    "ffv1": "ffv1",
    "prores": "prores_ks",
}
#: decoder (source codec) names -> the encoder that keeps the codec
_SAME_CODEC = {
    "h264": "libx264",
    "hevc": "libx265",
    "vp9": "libvpx-vp9",
    "av1": "libsvtav1",
    "ffv1": "ffv1",
    "prores": "prores_ks",
}
#: encoders each output container takes (by suffix); others: any
_CONTAINER_CODECS = {
    ".webm": {"libvpx-vp9", "libsvtav1"},
    ".mp4": {"libx264", "libx265", "libvpx-vp9", "libsvtav1"},
    ".m4v": {"libx264", "libx265"},
}
_DEFAULT_CRF = {"libx264": 23, "libx265": 28, "libvpx-vp9": 32, "libsvtav1": 35}


@dataclass
class Encoding:
    """What :func:`choose_encoding` settled for one video."""

    codec: str  # the FFmpeg encoder
    pix_fmt: str
    bits: int  # 8, 10, 16: of the RGB frames handed to it (8 -> rgb24, else rgb48)
    options: dict[str, str] = field(default_factory=dict)
    even_width: bool = True
    even_height: bool = True
    notes: list[str] = field(default_factory=list)

    def padded(self, width: int, height: int) -> tuple[int, int]:
        """The encoded size for an upscaled ``width`` x ``height`` (see "Even sizes")."""
        return width + (width % 2 if self.even_width else 0), height + (
            height % 2 if self.even_height else 0
        )


def encoder_name(name: str) -> str:
    """The FFmpeg encoder for the codec or encoder ``name``; :class:`ConfigError` (one line)
    when this FFmpeg build has none."""
    import av

    wanted = ALIASES.get(name.strip().lower(), name.strip())
    try:
        codec = av.Codec(wanted, "w")
    except Exception:  # noqa: BLE001 - unknown to this FFmpeg
        raise ConfigError(
            f"--video-codec {name}: no such video encoder in this FFmpeg build; use one of "
            f"{', '.join(sorted(set(ALIASES)))}"
        ) from None
    if codec.type != "video":
        raise ConfigError(f"--video-codec {name}: {codec.name} is not a video encoder")
    return codec.name


def check_options(video_codec: str | None, pix_fmt: str | None) -> None:
    """Refuse (one-line :class:`ConfigError`) a ``--video-codec`` this FFmpeg cannot encode
    or a ``--pix-fmt`` it does not know, before a batch starts; what depends on each video
    (its container, the encoder's formats) fails that video only. Without PyAV nothing is
    checked: each video then fails, saying how to install it."""
    try:
        import av
    except ImportError:
        return

    if video_codec:
        encoder_name(video_codec)
    if pix_fmt:
        try:
            av.VideoFormat(pix_fmt)
        except (ValueError, TypeError):
            raise ConfigError(
                f"--pix-fmt {pix_fmt}: no such pixel format; e.g. yuv420p, yuv444p, yuv420p10le"
            ) from None


def _formats(codec: str) -> list[str]:
    import av

    return [f.name for f in (av.Codec(codec, "w").video_formats or [])]


def _default_codec(source_codec: str, suffix: str) -> str:
    """The source's codec where it can be encoded into ``suffix``, else H.264 (VP9 in
    WebM)."""
    import av

    takes = _CONTAINER_CODECS.get(suffix.lower())
    same = _SAME_CODEC.get(source_codec)
    if same and (takes is None or same in takes):
        try:
            av.Codec(same, "w")
            return same
        except Exception:  # noqa: BLE001 - not in this build
            pass
    return "libvpx-vp9" if suffix.lower() == ".webm" else "libx264"


def _pixel_format(codec: str, asked: str | None, source_bits: int) -> tuple[str, list[str]]:
    """The encoder's pixel format (see the module docstring) and notes."""
    formats = _formats(codec)
    if asked:
        if formats and asked not in formats:
            raise ConfigError(
                f"--pix-fmt {asked}: {codec} does not take it; it takes {', '.join(formats)}"
            )
        return asked, []
    if source_bits > 8:
        for deep in ("yuv420p10le", "yuv422p10le", "yuv444p10le"):
            if deep in formats:
                return deep, []
        notes = [f"{codec} has no 10-bit format in this build: encoded in 8 bits"]
    else:
        notes = []
    for fmt in ("yuv420p", "yuv422p10le", "yuv444p"):
        if not formats or fmt in formats:
            return fmt, notes
    return formats[0], notes


def _bits_of(pix_fmt: str) -> int:
    import av

    return max((c.bits for c in av.VideoFormat(pix_fmt).components), default=8)


def choose_encoding(
    source_codec: str,
    source_bits: int,
    suffix: str,
    *,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    pix_fmt: str | None = None,
) -> Encoding:
    """The :class:`Encoding` of an upscaled video written to a ``suffix`` container, from
    the source's codec and depth and the options (see the module docstring)."""
    encoder = encoder_name(codec) if codec else _default_codec(source_codec, suffix)
    takes = _CONTAINER_CODECS.get(suffix.lower())
    if takes is not None and encoder not in takes:
        raise ConfigError(
            f"--video-codec {codec}: a {suffix} file cannot hold {encoder}; use one of "
            f"{', '.join(sorted(takes))} or write another container"
        )
    fmt, notes = _pixel_format(encoder, pix_fmt, source_bits)
    bits = _bits_of(fmt)
    options: dict[str, str] = {}
    if encoder in _DEFAULT_CRF:
        options["crf"] = str(crf if crf is not None else _DEFAULT_CRF[encoder])
        if encoder == "libvpx-vp9":
            options["b:v"] = "0"  # constant quality
    elif crf is not None:
        notes.append(f"--crf is ignored by {encoder}")
    if preset:
        key = {"libvpx-vp9": "cpu-used"}.get(encoder, "preset")
        options[key] = preset
    if encoder == "libx265":
        options["x265-params"] = "log-level=error"
    import av

    planes = av.VideoFormat(fmt, 16, 16).components  # subsampled chroma: less than 16
    even_w = any(c.width < 16 for c in planes)
    even_h = any(c.height < 16 for c in planes)
    return Encoding(encoder, fmt, 8 if bits <= 8 else 16, options, even_w, even_h, notes)
