"""The benchmark-suite tiers that need preference data, registered with ``evaluators.tiers``.

``evaluators`` never imports this package: pyproject.toml lists these objects under the
``prefdisco.tiers`` entry points, and ``evaluators.tiers.registered_tiers`` finds them there.
This module stays light (no torch): the runners are imported only when a run starts.
"""

from __future__ import annotations

from evaluators.tiers import Tier

SPA = Tier("spa", "preference_data.spa.tier:run_spa_tier", ("model", "sft", "data", "train", "spa"),
           "the SPA loop from a small gold seed; scored by the final policy's gold reward",
           "preference_data.spa.tier:reference_specs")
PLURALISTIC = Tier("pluralistic", "preference_data.pluralistic:run_pluralistic",
                   ("model", "sft", "data", "train", "pluralistic"),
                   "tinylm training on aggregated judgments of a simulated, unequal annotator population",
           "evaluators.tinylm:reference_specs")
