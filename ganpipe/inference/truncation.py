"""The truncation trick at generation time (torch-free): less variety for more typical,
cleaner images. What it does depends on the model, as its card says
(:attr:`ganpipe.modelcard.ModelCard.truncation`):

* ``z_redraw`` (BigGAN; generators that take Gaussian noise as drawn: dcgan, biggan, ...):
  noise values beyond ``+-T`` are redrawn (:func:`truncate`);
* ``w_lerp`` (StyleGAN): the model's ``truncation`` input gets psi = ``T`` and pulls every
  style towards the average w, ``w_avg + psi * (w - w_avg)`` (1: untruncated, 0: the
  average image); ``truncation_cutoff`` truncates only the first style layers;
* ``none`` (pggan): refused with the reason.
"""

from __future__ import annotations

import numpy as np

from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.modelcard import InputSpec, ModelCard

#: why models exported before the card said which truncation they have cannot truncate z
_NORMALISED_Z = {
    "pggan": "its generator normalises z to unit length (pixel norm), so truncating z "
    "changes nothing, and PGGAN defines no other truncation",
    "stylegan": "it was exported before stylegan truncated in W, and its mapping network "
    "normalises z, so truncating z changes nothing; re-export it with this ganpipe "
    "(ganpipe run PIPELINE --from export) to truncate w towards the average w",
}


def truncation_mode(card: ModelCard) -> str:
    """``z_redraw``, ``w_lerp`` or ``none``: the card's, or for cards before the field,
    ``z_redraw`` where the model has Gaussian noise (``none`` for pggan and stylegan)."""
    if card.truncation is not None:
        return card.truncation
    normal = any(s.kind == "normal" for s in card.inputs)
    return "z_redraw" if normal and card.variant not in _NORMALISED_Z else "none"


def check_truncation(
    name: str, card: ModelCard, truncation: float | None, cutoff: int | None = None
) -> None:
    """One-line errors for a ``truncation`` (and ``cutoff``) the model cannot take."""
    if truncation is None:
        if cutoff is not None:
            raise ConfigError("truncation_cutoff: set only with truncation (the psi to apply)")
        return
    mode = truncation_mode(card)
    if mode == "none":
        why = _NORMALISED_Z.get(card.variant, "its card says it has no truncation")
        if not any(s.kind == "normal" for s in card.inputs):
            why = "it has no Gaussian noise input"
        raise GanpipeError(f"--truncation: {name} cannot be truncated: {why}; drop --truncation")
    if mode == "z_redraw":
        if not truncation > 0:
            raise ConfigError(
                f"truncation: {name} redraws Gaussian noise values beyond +-T, which needs "
                f"T > 0, got {truncation:g}; use e.g. 0.5"
            )
        if cutoff is not None:
            raise ConfigError(
                f"truncation_cutoff: {name} truncates its noise, not per style layer; "
                f"drop --truncation-cutoff"
            )
        return
    spec = psi_input(card)
    if spec is None:
        raise GanpipeError(
            f"--truncation: {name}'s card says it truncates in W but it has no "
            f"'truncation' input; re-export it with this ganpipe"
        )
    layers = spec.shape[-1] if spec.shape else 1
    if cutoff is not None and not 1 <= cutoff <= layers:
        raise ConfigError(
            f"truncation_cutoff: {name} has {layers} style layers, got {cutoff}; use 1..{layers}"
        )


def psi_input(card: ModelCard) -> InputSpec | None:
    return next((s for s in card.inputs if s.kind == "truncation"), None)


def psi_values(
    spec: InputSpec, n: int, truncation: float | None, cutoff: int | None = None
) -> np.ndarray:
    """The ``truncation`` input for ``n`` samples: psi = ``truncation`` (1 when unset) for
    every style layer, or for the first ``cutoff`` only (1 for the others)."""
    values = np.full((n, *spec.shape), 1.0 if truncation is None else truncation, np.float32)
    if cutoff is not None:
        values[:, cutoff:] = 1.0
    return values


def truncate(z: np.ndarray, threshold: float, rng: np.random.Generator) -> np.ndarray:
    """The truncation trick (BigGAN): every value of ``z`` outside ``[-threshold,
    threshold]`` is redrawn from the standard normal until it falls inside, which samples
    a truncated normal. Smaller thresholds trade variety for typical, cleaner images.
    Values already inside are kept, so one seed gives related images at every threshold."""
    if not threshold > 0:
        raise GanpipeError(f"truncation must be greater than 0, got {threshold}")
    z = z.copy()
    outside = np.flatnonzero(np.abs(z) > threshold)
    while outside.size:
        redraw = rng.standard_normal(outside.size, dtype=np.float32)
        z.flat[outside] = redraw
        outside = outside[np.abs(redraw) > threshold]
    return z
