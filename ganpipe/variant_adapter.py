"""Plugin variants as ganpipe calls them: one adapter, applied when the registry loads a
variant (:meth:`ganpipe.registry.Entry.load`, ``register(obj)``).

* An object not derived from :class:`ganpipe.Variant` (written against the duck-typed
  contract of ganpipe 0.2) is wrapped in a :class:`LegacyVariant`: every method and
  attribute of the contract exists, the object's own where it has one, the base class's
  default otherwise, so the rest of ganpipe calls ``variant.method(...)`` directly. It
  warns once (:class:`DeprecationWarning`, one line): subclass ``ganpipe.Variant``.
* Every loaded variant, built-in or not, has its contract methods guarded
  (:func:`guard`): an exception raised inside them, or a ``build`` / ``train_step`` that
  returns the wrong type, is a one-line :class:`~ganpipe.errors.PluginCodeError` naming
  the plugin, its distribution, the method and the likely fix, the original exception
  chained as its ``__cause__`` (``ganpipe --debug`` / ``GANPIPE_DEBUG=1`` show its
  traceback). Errors meant for the user (:class:`~ganpipe.errors.GanpipeError`) and the
  user's own stop pass through unchanged. Method calls are wrapped, never tensors: a
  training step pays one Python call and an ``isinstance``.

Torch-free at import.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from ganpipe._deprecation import CHANGES
from ganpipe.contract import Hook, hooks
from ganpipe.errors import GanpipeError, PluginCodeError, one_line
from ganpipe.variant import Variant

#: variants not derived from ganpipe.Variant: deprecated in 0.3, refused from 0.5 (the
#: deprecation policy of docs/plugins.md, declared with the others in ganpipe._deprecation)
NOT_DERIVED = CHANGES["variant-not-derived"]


class LegacyVariant(Variant):
    """A plugin variant not derived from :class:`ganpipe.Variant`, with the base class's
    defaults for what it lacks; any other attribute is the wrapped object's."""

    def __init__(self, obj: Any):
        self._wrapped = obj
        for key in Variant.contract_attributes:
            if hasattr(obj, key):
                setattr(self, key, getattr(obj, key))
        for meth in hooks(Variant):
            fn = getattr(obj, meth, None)
            if callable(fn):
                setattr(self, meth, fn)

    def __getattr__(self, key: str) -> Any:  # only what the contract does not name
        wrapped = vars(self).get("_wrapped")
        if wrapped is None:
            raise AttributeError(key)
        return getattr(wrapped, key)


def adapt(obj: Any, where: str = "") -> Variant:
    """``obj`` itself when it is a :class:`~ganpipe.Variant`, else a
    :class:`LegacyVariant` around it (with a one-line DeprecationWarning)."""
    if isinstance(obj, Variant):
        return obj
    name = getattr(obj, "name", type(obj).__name__)
    # stacklevel 5: past _deprecation's two frames, as a warning from here with 3
    NOT_DERIVED.warn(
        f"{where + ': ' if where else ''}variant {name!r}, a class not derived from "
        "ganpipe.Variant,",
        replacement=f"a subclass of it: class {type(obj).__name__}(ganpipe.Variant)",
        stacklevel=5,
    )
    return LegacyVariant(obj)


class _Guarded:
    """A contract method of one loaded variant, whose failures name the plugin."""

    __slots__ = ("fn", "hook", "owner", "dist", "variant")

    def __init__(self, fn: Any, hook: Hook, owner: str, dist: str, variant: Any):
        self.fn, self.hook, self.owner, self.dist, self.variant = fn, hook, owner, dist, variant

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self.fn(*args, **kwargs)
        except GanpipeError:
            raise  # meant for the user as it is (ConfigError from check_data...)
        except Exception as exc:  # noqa: BLE001 - anything else is a bug in the plugin
            fix = likely_fix(self.hook, exc, self.variant)
            raise self.error(f"raised {_what(exc)}", fix) from exc
        name = self.hook.name
        if name == "train_step" and not isinstance(result, dict):
            raise self.error(f"returned {type(result).__name__}", self.hook.fix)
        if name == "build":
            problem = nets_problem(result, self.variant.generator_net)
            if problem:
                raise self.error(*problem)
        return result

    def error(self, what: str, fix: str) -> PluginCodeError:
        return PluginCodeError(
            f"plugin {self.owner!r} ({self.dist}): Variant.{self.hook.name} {what}"
            + (f"; {fix}" if fix else ""),
            plugin=self.owner,
            dist=self.dist,
            method=self.hook.name,
        )

    def __reduce__(self) -> tuple[Any, ...]:  # data-parallel workers get the variant pickled
        return (_Guarded, (self.fn, self.hook, self.owner, self.dist, self.variant))


def guard(variant: Variant, owner: str, dist: str) -> Variant:
    """Guard the contract methods of ``variant`` in place (see the module docstring); the
    object stays what it is (``isinstance`` holds). Guarding twice changes nothing."""
    for name, marker in hooks(Variant).items():
        if not isinstance(vars(variant).get(name), _Guarded):
            fn = getattr(variant, name)
            setattr(variant, name, _Guarded(fn, marker, owner, dist, variant))
    return variant


def load_variant(obj: Any, owner: str, dist: str) -> Variant:
    """What the registry keeps for a variant: :func:`adapt`, then :func:`guard`."""
    where = f"plugin {owner!r} ({dist})"
    return guard(adapt(obj, where), owner, dist)


def _what(exc: BaseException) -> str:
    text = one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_NO_ATTRIBUTE = re.compile(r"'(\w+)' object has no attribute '(\w+)'")


def likely_fix(hook: Hook, exc: BaseException, variant: Any) -> str:
    """The fix to name for ``exc`` raised in ``hook``: an option the code reads but the
    variant's ``Options`` lacks, out of memory, a net or optimizer name that is not there,
    else the method's contract (:attr:`Hook.fix`)."""
    options = getattr(variant, "Options", None)
    found = _NO_ATTRIBUTE.search(str(exc)) if isinstance(exc, AttributeError) else None
    if found and isinstance(options, type) and found.group(1) == options.__name__:
        key, cls = found.group(2), options.__name__
        return (
            f"the code reads opts.{key}, which {cls} does not declare; add it to the "
            f"variant's options (class MyOptions({cls}): {key}: ... = <default>; "
            f"Options = MyOptions)"
        )
    if isinstance(exc, NotImplementedError):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        missing = tb.tb_frame.f_code.co_name if tb is not None else hook.name
        return f"{missing}() is only the base class's; implement it in the variant"
    text = str(exc).lower()
    if "out of memory" in text or type(exc).__name__ == "OutOfMemoryError":
        return "lower train.batch_size or the model's widths, or train on a larger device"
    if isinstance(exc, KeyError) and hook.name in ("optimizers", "generate", "export_spec"):
        return (
            f"a net name that build() does not return; {hook.fix} (build returns the nets "
            f"by name; set generator_net to the one that makes images)"
        )
    return hook.fix


def nets_problem(nets: Any, generator_net: str) -> tuple[str, str] | None:
    """What is wrong with what ``build`` returned, and the fix (``None``: a dict of named
    modules that holds ``generator_net``)."""
    fix = (
        f"build(opts, info) must return a dict of nets by name, e.g. {{{generator_net!r}: "
        f"generator, 'D': discriminator}}, with the key {generator_net!r} (generator_net)"
    )
    if not isinstance(nets, dict) or not nets:
        what = "an empty dict" if isinstance(nets, dict) else f"a {type(nets).__name__}"
        return f"returned {what}", fix
    torch = sys.modules.get("torch")  # loaded when build made nets; never imported here
    module = torch.nn.Module if torch is not None else ()
    for key, net in nets.items():
        if not isinstance(key, str) or not isinstance(net, module):
            return f"returned {{{key!r}: {type(net).__name__}}}", fix
    if generator_net not in nets:
        return (
            f"returned the nets {sorted(nets)}, without {generator_net!r} (generator_net)",
            f"return the net that makes images as {generator_net!r}, or set generator_net "
            f"to its name",
        )
    return None
