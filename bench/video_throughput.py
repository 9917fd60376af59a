"""Frames/s of ``ganpipe upscale`` on a video against the same frames as PNG files through
the folder path, and the peak memory of the video command for a clip and a longer one.

Run:  python bench/video_throughput.py [--size 96x64] [--frames 48] [--long-factor 10]
                                       [--repeats 3] [--out FILE.md]

Set-up (a subprocess of its own, in a temporary folder): Real-ESRGAN's compact x4 shape
(``realesr-animevideov3``: ``SRVGGNetCompact(3, 3, num_feat=64, num_conv=16, upscale=4)``,
random weights) saved as ``{"params": state_dict}`` and converted with
``ganpipe.weights.import_weights``; two clips written with ``tests/_videos.py``
(``mp4_h264_aac``: H.264 + AAC in MP4, gradients and moving boxes) of ``--frames`` and
``--long-factor`` x as many frames; each clip's frames decoded with PyAV and saved as PNG
files in a folder of their own. None of that is timed.

Timed, each a fresh subprocess with the defaults a user gets (CPU):

* **video**: ``python -m ganpipe upscale -i clip.mp4 -o OUT -m model.onnx``;
* **png**: ``python -m ganpipe upscale -i frames/ -o OUT -m model.onnx`` on the same
  frames (the folder path: decode PNG, upscale, encode PNG, one file after another).

The four commands (video and png, short and long clip) run once untimed (file cache,
and a check that the video path works and writes every frame), then ``--repeats``
rounds, the order reversed every other round (``common.alternate``); tables give
medians. Frames/s = frames / wall time of the whole command; per frame = (long - short)
/ (long frames - short frames), the cost of one more frame without the command's fixed
cost. The **ratio** is png / video per frame (>= 1: the video path is at least as fast
per frame; the target). Peak memory is each command's ``ru_maxrss`` from ``os.wait4``;
the target is the long clip's within 10% of the short clip's (memory must not grow with
the length of the video). This parent imports neither numpy nor torch: on Linux a
child's ``ru_maxrss`` starts at the high-water mark of the process that spawned it.

Until ``ganpipe upscale`` takes videos the script stops after the untimed round with
one line saying so. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, alternate, median, num, print_markdown

MiB = 2**20


def setup(cfg: dict) -> dict:
    """Model, clips and PNG frames (run in a subprocess: torch and PyAV stay out of the
    parent, whose RSS would count in every child's peak)."""
    import av
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT / "tests"))
    from _videos import mp4_h264_aac

    from ganpipe.nn.sr import SRVGGNetCompact
    from ganpipe.weights import import_weights

    torch.set_num_threads(1)
    folder = Path(cfg["folder"])
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=64, num_conv=16, upscale=4).eval()
    torch.save({"params": net.state_dict()}, folder / "compact_x4.pth")
    model = import_weights(folder / "compact_x4.pth", folder / "compact_x4.onnx").path
    made = {"model": str(model), "clips": {}}
    for name, frames in cfg["clips"].items():
        clip = mp4_h264_aac(
            folder / f"{name}.mp4", frames=frames, fps=24, size=tuple(cfg["size"]), chapters=False
        )
        pngs = folder / f"{name}_frames"
        pngs.mkdir()
        with av.open(str(clip)) as src:
            for i, frame in enumerate(src.decode(video=0)):
                arr = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                Image.fromarray(arr).save(pngs / f"frame_{i:05d}.png")
        made["clips"][name] = {"video": str(clip), "pngs": str(pngs), "frames": i + 1}
    made["versions"] = f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})"
    return made


def check(cfg: dict) -> dict:
    """What each untimed command wrote: frames and size of the output video, or the PNGs."""
    import av

    out = {}
    for name, folder in cfg.items():
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        if name.startswith("png"):
            out[name] = {"files": len(files)}
            continue
        videos = [p for p in files if p.suffix.lower() in {".mp4", ".mkv", ".mov", ".webm"}]
        if not videos:
            out[name] = {"error": f"no video written in {folder} ({len(files)} files)"}
            continue
        with av.open(str(videos[0])) as src:
            stream = src.streams.video[0]
            frames = sum(1 for _ in src.decode(video=0))
            out[name] = {
                "frames": frames,
                "size": [stream.codec_context.width, stream.codec_context.height],
                "codec": stream.codec_context.name,
                "streams": [s.type for s in src.streams],
            }
    return out


def spawn(flag: str, cfg: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{flag} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


class Command:
    """One ``ganpipe upscale`` command, run as a subprocess into an emptied folder; keeps
    each run's peak RSS (``os.wait4``) and exit status."""

    def __init__(self, src: str, out: Path, model: str):
        self.out = out
        self.argv = [sys.executable, "-m", "ganpipe", "upscale", "-i", src, "-o", str(out)]
        self.argv += ["-m", model]
        self.rss: list[int] = []
        self.failure = ""

    def __call__(self) -> None:
        shutil.rmtree(self.out, ignore_errors=True)
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                self.argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL
            )
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.rss.append(usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024))
            if proc.returncode != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                self.failure = f"exit {proc.returncode}: {lines[-1] if lines else '(no output)'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="96x64", help="clip size WxH (even)")
    ap.add_argument("--frames", type=int, default=48, help="frames of the short clip")
    ap.add_argument("--long-factor", type=int, default=10, help="the long clip: this x frames")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (medians)")
    ap.add_argument("--out", type=Path, help="also write the Markdown result here")
    ap.add_argument("--setup", help=argparse.SUPPRESS)
    ap.add_argument("--check", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.setup:
        print("RESULT " + json.dumps(setup(json.loads(args.setup))))
        return 0
    if args.check:
        print("RESULT " + json.dumps(check(json.loads(args.check))))
        return 0

    w, h = (int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="ganpipe-bench-video-"))
    try:
        clips = {"short": args.frames, "long": args.frames * args.long_factor}
        made = spawn("--setup", {"folder": str(tmp), "size": [w, h], "clips": clips})
        cmds = {}
        for name, clip in made["clips"].items():
            cmds[f"video {name}"] = Command(clip["video"], tmp / f"out_video_{name}", made["model"])
            cmds[f"png {name}"] = Command(clip["pngs"], tmp / f"out_png_{name}", made["model"])
        for cmd in cmds.values():  # untimed round: warm caches, and does the video path work?
            cmd()
        failed = {n: c.failure for n, c in cmds.items() if c.failure}
        seen = spawn("--check", {n: str(c.out) for n, c in cmds.items()})
        for name, clip in made["clips"].items():
            got = seen[f"video {name}"]
            if not failed.get(f"video {name}") and got.get("frames") != clip["frames"]:
                failed[f"video {name}"] = got.get("error") or (
                    f"wrote {got.get('frames')} frames, not {clip['frames']}"
                )
        if failed:
            for name, why in failed.items():
                print(f"{name}: {why}")
            print(
                "video_throughput: `ganpipe upscale` does not (yet) upscale videos here "
                "(see the lines above); nothing measured"
            )
            return 1
        for cmd in cmds.values():
            cmd.rss.clear()
        times = alternate(cmds, args.repeats, warmup=0)
        bad = {n: c.failure for n, c in cmds.items() if c.failure}
        if bad:
            raise SystemExit(f"a timed command failed: {bad}")
        return report(args, made, cmds, times, seen, (w, h))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(args, made, cmds, times, seen, size) -> int:
    frames = {n: made["clips"][n.split()[1]]["frames"] for n in cmds}
    t = {n: median(v) for n, v in times.items()}
    rss = {n: median(c.rss) for n, c in cmds.items()}
    per_frame = {
        kind: (t[f"{kind} long"] - t[f"{kind} short"])
        / (frames[f"{kind} long"] - frames[f"{kind} short"])
        for kind in ("video", "png")
    }
    ratio = per_frame["png"] / per_frame["video"] if per_frame["video"] > 0 else float("nan")
    # the same ratio within each round (its four commands ran back to back), so that a
    # change of the machine's load between rounds shows as spread, not as a ratio
    rounds = [
        (times["png long"][i] - times["png short"][i])
        / (times["video long"][i] - times["video short"][i])
        for i in range(len(times["png long"]))
    ]
    whole = {k: t[f"png {k}"] / t[f"video {k}"] for k in ("short", "long")}
    growth = rss["video long"] / rss["video short"]
    out_v = seen["video short"]
    lines = [
        f"# Video upscaling throughput and memory ({platform.node() or 'this machine'})",
        "",
        f"`python bench/video_throughput.py --size {args.size} --frames {args.frames} "
        f"--long-factor {args.long_factor} --repeats {args.repeats}`; python "
        f"{platform.python_version()}, {made['versions']}, {os.cpu_count()} CPUs, load "
        f"average {os.getloadavg()[0]:.1f} at the end. Model: compact x4 (SRVGGNetCompact, "
        f"64 features, 16 convolutions, random weights), CPU, ganpipe's defaults. Clips: "
        f"H.264 + AAC MP4, {size[0]}x{size[1]}; output video {out_v['codec']} "
        f"{out_v['size'][0]}x{out_v['size'][1]}, streams {', '.join(out_v['streams'])}.",
        "",
        "| command | frames | median s | frames/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for n in cmds:
        lines.append(
            f"| {n} | {frames[n]} | {num(t[n])} | {num(frames[n] / t[n])} | {rss[n] / MiB:.0f} |"
        )
    lines += [
        "",
        f"Per frame (long - short, fixed cost removed): video {per_frame['video'] * 1e3:.1f} ms "
        f"({num(1 / per_frame['video'])} frames/s), PNG folder {per_frame['png'] * 1e3:.1f} ms "
        f"({num(1 / per_frame['png'])} frames/s).",
        "",
        f"**Ratio png / video per frame: {ratio:.2f}x** (target >= 1: the video path at "
        f"least as fast per frame). Per round: {', '.join(f'{r:.2f}' for r in rounds)}. "
        f"Whole commands, png / video: short clip {whole['short']:.2f}x, long clip "
        f"{whole['long']:.2f}x.",
        "",
        f"**Peak RSS of the video command, long / short clip: {growth:.3f}** "
        f"({rss['video short'] / MiB:.0f} -> {rss['video long'] / MiB:.0f} MiB; target: "
        f"within 10%). This parent's own peak: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB.",
    ]
    print_markdown(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
