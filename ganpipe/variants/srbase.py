"""Moved: the super-resolution base is public as :class:`ganpipe.SRVariant` and
:class:`ganpipe.SROptions` (:mod:`ganpipe.sr_variant`); these names stay for old imports."""

from ganpipe.sr_variant import DEGRADATIONS, SROptions, SRVariant

__all__ = ["DEGRADATIONS", "SROptions", "SRVariant"]
