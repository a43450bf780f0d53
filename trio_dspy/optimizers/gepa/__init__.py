"""GEPA: reflective prompt evolution (:class:`GEPA`), concurrent.

One module per job: :mod:`.budget` (the metric-call budget), :mod:`.pareto`
(fronts and parent choice), :mod:`.reflection` (the reflection prompt),
:mod:`.merge` (merging front programs), :mod:`.runs` (running candidates),
:mod:`.journal` (resuming), :mod:`.state` (candidates and the result) and
:mod:`.optimizer` (the search loop).
"""

from .budget import auto_budget
from .optimizer import GEPA
from .reflection import REFLECTION_TEMPLATE, extract_instruction
from .state import GEPAResult

__all__ = ["GEPA", "REFLECTION_TEMPLATE", "GEPAResult", "auto_budget", "extract_instruction"]
