"""The BentoML models both services declare, resolved once per process.

BentoML packs a service's models from its class attributes, so the tags must be known when the
classes are defined (``service.py``, ``runners/service.py``): the champion record or the
environment is read on the first call here, and every later call (the other class, in the same
process) gets the same references. Resolving a tag imports no torch: an API worker that scores
through a runner never loads the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import bentoml

from model_artifact.champion import CanaryTag, resolve_served_tags
from model_artifact.settings import RegistrySettings


@dataclass(frozen=True)
class ServedRefs:
    champion: bentoml.models.BentoModel
    challenger: bentoml.models.BentoModel | None
    canary: bentoml.models.BentoModel | None
    canary_split: CanaryTag | None  # its promotion and starting share


@cache
def served_refs() -> ServedRefs:
    tags = resolve_served_tags(RegistrySettings())
    challenger = bentoml.models.BentoModel(tags.challenger) if tags.challenger else None
    canary = bentoml.models.BentoModel(tags.canary.tag) if tags.canary else None
    return ServedRefs(bentoml.models.BentoModel(tags.champion), challenger, canary, tags.canary)
