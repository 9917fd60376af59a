"""The test videos of tests/_videos.py are what they say: the streams, frame counts, times,
rotation, bit depth and damage the video tests rely on, read back with PyAV."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")  # the video extra; CI's test extra has it

from _videos import (  # noqa: E402
    CUES,
    decoded_frames,
    frame_pts,
    frame_rgb,
    keyframe_pts,
    lossless,
    mkv_vp9_opus_subs,
    mp4_h264_aac,
    rotated,
    stream_packet_hashes,
    stream_packet_times,
    ten_bit,
    truncated,
    vfr,
    vfr_pts_ms,
    video_info,
    video_with_image_extension,
)


def test_mp4_h264_aac_streams_metadata_chapters(tmp_path):
    info = video_info(mp4_h264_aac(tmp_path / "a.mp4", frames=24, fps=24))
    assert (info["codec"], info["width"], info["height"], info["frames"]) == ("h264", 64, 48, 24)
    assert info["streams"][:2] == ["video", "audio"]
    assert info["metadata"]["title"] == "ganpipe test clip"
    assert info["metadata"]["location"] == "+48.8584+002.2945/"
    assert [c["metadata"]["title"] for c in info["chapters"]] == ["Start", "End"]
    assert abs(info["duration"] - 1.0) < 0.1
    hashes = stream_packet_hashes(tmp_path / "a.mp4")
    assert "a:0" in hashes and hashes == stream_packet_hashes(tmp_path / "a.mp4")
    # deterministic: the same call writes the same audio and the same frames
    mp4_h264_aac(tmp_path / "b.mp4", frames=24, fps=24)
    assert stream_packet_hashes(tmp_path / "b.mp4")["a:0"] == hashes["a:0"]
    assert frame_pts(tmp_path / "b.mp4") == frame_pts(tmp_path / "a.mp4")
    pts = frame_pts(tmp_path / "a.mp4")
    assert keyframe_pts(tmp_path / "a.mp4") == [pts[0], pts[12]]  # gop 12
    audio = stream_packet_times(tmp_path / "a.mp4")["a:0"]
    assert len(audio) > 40 and all(d > 0 for _, d in audio)


def test_mkv_vp9_opus_subtitles(tmp_path):
    path = mkv_vp9_opus_subs(tmp_path / "a.mkv", frames=12)
    info = video_info(path)
    assert info["codec"] == "vp9" and info["frames"] == 12
    assert info["streams"] == ["video", "audio", "subtitle"]
    assert info["metadata"]["LOCATION"] == "+48.8584+002.2945/"  # Matroska upper-cases tags
    assert len(info["chapters"]) == 2
    assert set(stream_packet_hashes(path)) == {"a:0", "s:0"}
    assert stream_packet_times(path)["s:0"] == [(a, b - a) for a, b, _ in CUES]  # ms
    with av.open(str(path)) as src:
        assert src.streams.audio[0].codec_context.name == "opus"
        sub = src.streams.subtitles[0]
        texts = [bytes(p).decode() for p in src.demux(sub) if p.size]
    assert texts == [text for _, _, text in CUES]


def test_vfr_keeps_irregular_times(tmp_path):
    pts = frame_pts(vfr(tmp_path / "v.mp4", frames=16))
    assert pts == vfr_pts_ms(16)
    assert len({b - a for a, b in zip(pts, pts[1:], strict=False)}) > 3


def test_rotated_reads_back(tmp_path):
    assert video_info(rotated(tmp_path / "r.mp4", degrees=90))["rotation"] == 90
    assert video_info(rotated(tmp_path / "s.mp4", degrees=-90))["rotation"] == -90


def test_ten_bit_and_lossless(tmp_path):
    info = video_info(ten_bit(tmp_path / "t.mp4"))
    assert info["pix_fmt"] == "yuv420p10le" and info["frames"] == 12
    assert (info["color_range"], info["colorspace"]) == (1, 1)
    frames = decoded_frames(lossless(tmp_path / "l.mkv"), format="yuv444p")
    assert len(frames) == 12
    # FFV1 gives back exactly what was encoded: the RGB->YUV conversion is the only loss
    rgb = decoded_frames(tmp_path / "l.mkv")
    assert np.abs(rgb[3].astype(int) - frame_rgb(3).astype(int)).max() <= 8


def test_truncated_decodes_partially(tmp_path):
    full = len(frame_pts(truncated(tmp_path / "whole.mkv", frames=24, keep=1.0)))
    part = len(frame_pts(truncated(tmp_path / "cut.mkv", frames=24, keep=0.5)))
    assert full == 24 and 0 < part < 24


def test_video_with_image_extension(tmp_path):
    path = video_with_image_extension(tmp_path / "clip.png")
    assert path.suffix == ".png" and path.read_bytes()[4:8] == b"ftyp"
    assert video_info(path)["frames"] == 12
