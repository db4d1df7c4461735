"""Base for every layer's configuration: frozen, typed, no unknown fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LayerConfig(BaseModel):
    """A layer's inputs. Values only (CIDRs, names, retention): never a switch that turns a
    security control off, because those are fixed in the construct's code."""

    model_config = ConfigDict(extra="forbid", frozen=True)
