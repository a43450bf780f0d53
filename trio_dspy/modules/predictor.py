"""``Predictor``: what a module with learned state provides (demos, saved state).

Its own module so that the saved-file readers (``dspy_state.py``) can name
it without importing :mod:`trio_dspy.modules.module`, which imports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..lm.base import BaseLM
    from ..signature import Signature

__all__ = ["Predictor"]


@runtime_checkable
class Predictor(Protocol):
    """A module with learned state: what :meth:`Module.named_predictors` finds.

    :class:`~trio_dspy.Predict` (and so ``ChainOfThought``) implements it.
    Loading is in two steps so that a saved file is validated for every
    predictor before any of them changes: :meth:`parse_predictor_state`
    checks and converts, :meth:`apply_predictor_state` installs.
    """

    signature: type[Signature]
    demos: list[Mapping[str, Any]]
    lm: BaseLM | None

    def reset(self) -> None:
        """Forget learned state (demos)."""

    def dump_predictor_state(self) -> dict[str, Any]:
        """The learned state as JSON-ready data."""

    def parse_predictor_state(self, state: Any) -> Any:
        """Validate ``state`` (from :meth:`dump_predictor_state`); change nothing.

        Raises:
            TrioDSPyError: the state is malformed or does not fit this predictor.
        """

    def apply_predictor_state(self, parsed: Any) -> None:
        """Install what :meth:`parse_predictor_state` returned."""
