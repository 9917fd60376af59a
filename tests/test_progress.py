"""Progress bars: shown on a terminal for training, export and evaluate; `ganpipe run
--quiet` turns them all off and keeps the stage summary lines. Run through a real
pseudo-terminal, since the bars only show when stderr is one."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

from conftest import TINY_PIPELINE, write_toml

from ganpipe import progress


def _run_on_a_terminal(*args: str, cwd) -> tuple[int, str, str]:
    """(exit code, stdout, what the terminal on stderr showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 120 columns
    proc = subprocess.Popen(
        [sys.executable, "-m", "ganpipe", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode()
    os.close(master)
    return proc.wait(timeout=300), out, shown.decode(errors="replace")


def _pipeline(tmp_path):
    text = TINY_PIPELINE.format(variant="dcgan", steps=30).replace("progress = false", "")
    text += '\n[evaluate]\ncount = 16\nreal = "train"\nbatch_size = 8\n'
    return write_toml(tmp_path / "pipeline.toml", text)


def test_bars_on_a_terminal_and_none_with_quiet(tmp_path):
    toml = _pipeline(tmp_path)
    code, out, shown = _run_on_a_terminal("run", str(toml), cwd=tmp_path)
    assert code == 0, shown
    for bar in ("train", "export model.onnx", "evaluate: generate", "evaluate: features"):
        assert f"{bar}:" in shown, f"no {bar!r} progress bar on the terminal:\n{shown}"
    assert "step/s" in shown or "s/step" in shown  # a rate, hence an ETA
    code, out, shown = _run_on_a_terminal("run", "--force", "--quiet", str(toml), cwd=tmp_path)
    assert code == 0, shown
    assert "train:" not in shown and "evaluate: generate" not in shown, shown
    assert "[train] done in" in out and "[evaluate] done in" in out  # summaries stay


def test_quiet_reaches_child_processes(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.bar(3, "x", enabled=True).disable is False
    progress.set_quiet()
    try:
        assert progress.bar(3, "x", enabled=True).disable is True
        code = "from ganpipe import progress; print(progress.quiet())"
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert child.stdout.strip() == "True"
    finally:
        progress.set_quiet(False)
    assert not progress.quiet()
