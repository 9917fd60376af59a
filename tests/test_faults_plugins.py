"""Hostile plugins: ones that exit, raise a ``BaseException`` or print, at import or in a
hook. Each is a real distribution (a ``*.dist-info`` folder on PYTHONPATH, see
:func:`test_plugins.write_dist`) found through its entry point by a real ``ganpipe``
subprocess. An exit is one line naming the plugin and its distribution, never a silent
end; whatever a plugin prints reaches stderr, so ``ganpipe plugins --json`` stays JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_plugins import assert_listed_broken, with_site, write_dist

from ganpipe.errors import PluginError
from ganpipe.plugins import get_plugin_manager

#: plugin modules that stop at import: (source, what the one line says)
AT_IMPORT = {
    "exit-0": ("raise SystemExit(0)\n", "it tried to exit ganpipe (SystemExit(0))"),
    "exit-3": ("import sys\nsys.exit(3)\n", "it tried to exit ganpipe (SystemExit(3))"),
    "keyboard-interrupt": ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
    "base-exception": (
        "class Stop(BaseException):\n    pass\n\nraise Stop('not today')\n",
        "Stop: not today",
    ),
}


@pytest.fixture(autouse=True)
def _plugins_enabled(monkeypatch):
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)


def hostile_site(tmp_path: Path, case: str, source: str, **extra: str) -> tuple[Path, str, str]:
    """A site folder holding one distribution whose plugin module is ``source``:
    (site, entry-point name, distribution)."""
    ep_name, dist = f"hostile-{case}", f"ganpipe-hostile-{case}"
    module = f"ganpipe_hostile_{case.replace('-', '_')}"
    site = write_dist(
        tmp_path / "site", dist, "0.1.0", {module: source, **extra}, {ep_name: module}
    )
    return site, ep_name, dist


@pytest.mark.parametrize("case", sorted(AT_IMPORT))
def test_plugin_stopping_at_import_is_one_line_naming_it(cli, tmp_path, case):
    source, says = AT_IMPORT[case]
    site, ep_name, dist = hostile_site(tmp_path, case, source)
    needles = (
        f"plugin {ep_name!r} (distribution {dist} 0.1.0) failed to load",
        says,
        f"GANPIPE_DISABLE_PLUGINS={ep_name}",
    )
    # listed with its problem, the others too (a warning; ganpipe carries on)
    assert_listed_broken(cli("plugins", env=with_site(site)), ep_name, *needles)
    proc = cli("plugins", "--json", env=with_site(site))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "dcgan" in {v["name"] for v in data["variants"]}
    (problem,) = [p["problem"] for p in data["plugins"] if p["name"] == ep_name]
    assert all(n in problem for n in needles), problem
    # skipped by name, not even a warning
    proc = cli("plugins", "--json", env=with_site(site, GANPIPE_DISABLE_PLUGINS=ep_name))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "dcgan" in {v["name"] for v in json.loads(proc.stdout)["variants"]}


@pytest.mark.parametrize("case", ["exit-0", "exit-3"])
def test_plugin_exiting_at_import_is_said_by_run_and_names_it_when_needed(
    cli, tmp_path, tiny_pipeline, case
):
    """Before the fix ``ganpipe run`` ended with the plugin's exit code (0: as if it had
    worked), having run nothing and said nothing. Now it says so and skips the plugin; a
    variant no other plugin provides is refused naming it, before any stage."""
    source, says = AT_IMPORT[case]
    site, ep_name, dist = hostile_site(tmp_path, case, source)
    proc = cli("run", str(tiny_pipeline(variant="gone")), cwd=tmp_path, env=with_site(site))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    warning, error = proc.stderr.strip().splitlines()
    assert warning.startswith(f"ganpipe: warning: plugin {ep_name!r}") and says in warning
    assert error.startswith("ganpipe: error: ") and "unknown variant 'gone'" in error, error
    assert all(n in error for n in (f"plugin {ep_name!r}", f"{dist} 0.1.0", says)), error
    assert not (tmp_path / "runs").exists()


def test_plugin_exiting_in_a_hook_is_one_line_naming_it(cli, tmp_path):
    source = """
        import sys
        import ganpipe

        @ganpipe.hookimpl
        def ganpipe_register_variants(register):
            print("registering nothing")
            sys.exit(0)
        """
    site, ep_name, dist = hostile_site(tmp_path, "hook-exit", source)
    proc = cli("plugins", "--json", env=with_site(site))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert ep_name in {p["name"] for p in json.loads(proc.stdout)["plugins"]}  # only JSON
    # what it printed went to stderr, before the one warning line; it is skipped
    assert proc.stderr.splitlines()[0] == "registering nothing"
    line = proc.stderr.splitlines()[-1]
    assert line.startswith(f"ganpipe: warning: plugin {ep_name!r} (distribution {dist} 0.1.0)")
    assert "failed in ganpipe_register_variants: it tried to exit ganpipe (SystemExit(0))" in line
    assert "Traceback" not in proc.stderr


#: a plugin that writes to stdout every way it can: print, the real stdout object, the
#: file descriptor, native code (libc's printf, buffered when stdout is a pipe); at import,
#: in its registration hook, and in its lazily imported variant module (--check)
NOISY = """
    import ctypes
    import os
    import sys

    import ganpipe

    print("noisy: print at import")
    sys.__stdout__.write("noisy: sys.__stdout__ at import\\n")
    os.write(1, b"noisy: fd 1 at import\\n")
    ctypes.CDLL(None).printf(b"noisy: printf at import\\n")

    @ganpipe.hookimpl
    def ganpipe_register_variants(register):
        print("noisy: print in hook")
        os.write(1, b"noisy: fd 1 in hook\\n")
        ctypes.CDLL(None).printf(b"noisy: printf in hook\\n")
        register.lazy("ganpipe_noisy_variant:Noisy", name="noisy", task="generate")
    """
NOISY_VARIANT = """
    import os

    import ganpipe

    print("noisy: print in lazy import")
    os.write(1, b"noisy: fd 1 in lazy import\\n")

    from ganpipe.variants.dcgan import DCGAN

    class Noisy(DCGAN):  # a working variant: plugins --check runs its quick checks
        name = "noisy"
    """


@pytest.mark.skipif(sys.platform != "linux", reason="printf through ctypes.CDLL(None)")
@pytest.mark.parametrize("check", [False, True], ids=["list", "check"])
def test_printing_plugin_leaves_plugins_json_valid(cli, tmp_path, check):
    site, ep_name, dist = hostile_site(
        tmp_path, "noisy", NOISY, ganpipe_noisy_variant=NOISY_VARIANT
    )
    args = ("plugins", "--json", *(["--check"] if check else []))
    # buffered, as in a user's pipe: libc's printf waits in its buffer until flushed
    proc = cli(*args, env=with_site(site, PYTHONUNBUFFERED=""))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # nothing but the JSON on stdout
    assert {"name": ep_name, "distribution": f"{dist} 0.1.0"} in data["plugins"]
    assert "noisy" in {v["name"] for v in data["variants"]}
    said = [
        "print at import",
        "sys.__stdout__ at import",
        "fd 1 at import",
        "printf at import",
        "print in hook",
        "fd 1 in hook",
        "printf in hook",
    ]
    if check:
        said += ["print in lazy import", "fd 1 in lazy import"]
    for text in said:  # not lost either: on stderr
        assert f"noisy: {text}" in proc.stderr, (text, proc.stderr)
    assert "noisy:" not in proc.stdout


def test_users_sigterm_during_plugin_import_still_stops_ganpipe(cli, tmp_path):
    """A SIGTERM arriving while a plugin is imported is the user's stop, not the
    plugin's failure: ganpipe stops as it does for SIGTERM anywhere else."""
    source = "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"
    site, _, _ = hostile_site(tmp_path, "slow", source)
    proc = cli("plugins", "--json", env=with_site(site))
    assert proc.returncode == 143, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: stopped by SIGTERM"), proc.stderr
    assert proc.stdout == ""


def test_exiting_plugin_raises_plugin_error_in_process(tmp_path, monkeypatch):
    site, ep_name, dist = hostile_site(tmp_path, "exit-in-process", "raise SystemExit(5)\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        with pytest.raises(PluginError) as info:
            get_plugin_manager()
        assert str(info.value).startswith(
            f"plugin {ep_name!r} (distribution {dist} 0.1.0) failed to load: it tried to "
            f"exit ganpipe (SystemExit(5))"
        )
        assert isinstance(info.value.__cause__, SystemExit)
    finally:
        sys.modules.pop("ganpipe_hostile_exit_in_process", None)


def test_lazy_variant_exiting_at_import_is_one_line_on_check_and_on_use(
    cli, tmp_path, tiny_pipeline
):
    """A lazily registered variant whose module exits when a pipeline first uses it
    (needs the lazy load in ganpipe/registry.py under plugins.plugin_code)."""
    plugin = """
        import ganpipe

        @ganpipe.hookimpl
        def ganpipe_register_variants(register):
            register.lazy("ganpipe_exiting_variant:Gone", name="gone", task="generate")
        """
    target = "import sys\nprint('leaving')\nsys.exit(0)\n"
    site, ep_name, dist = hostile_site(
        tmp_path, "lazy-exit", plugin, ganpipe_exiting_variant=target
    )
    needles = (
        f"plugin {ep_name!r} ({dist} 0.1.0): cannot load variant 'gone' from "
        "ganpipe_exiting_variant:Gone: it tried to exit ganpipe (SystemExit(0))",
        f"GANPIPE_DISABLE_PLUGINS={ep_name}",
    )
    proc = cli("plugins", "--check", "--json", env=with_site(site))
    assert proc.returncode == 1, proc.stderr
    (problem,) = json.loads(proc.stdout)["problems"]  # stdout: the JSON only
    assert all(n in problem["message"] for n in needles), problem
    assert proc.stderr.splitlines()[0] == "leaving"
    assert proc.stderr.splitlines()[-1] == f"ganpipe: error: {problem['message']}"
    proc = cli("run", str(tiny_pipeline(variant="gone")), cwd=tmp_path, env=with_site(site))
    assert proc.returncode == 1, proc.stderr
    assert all(n in proc.stderr.splitlines()[-1] for n in needles), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
