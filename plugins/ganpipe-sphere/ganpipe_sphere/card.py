"""The model-card fields of the namespace ``sphere``: what a tool walking the latent
space of a ``dcgan-sphere`` model needs to know. ``card.extension("sphere")`` returns
them typed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SphereFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field("z", description="the generator input whose codes lie on the sphere")
    radius: float = Field(gt=0, description="the sphere's radius: sqrt(latent_dim)")
    interpolation: Literal["slerp"] = Field(
        "slerp", description="walk between codes along great circles, not straight lines"
    )
