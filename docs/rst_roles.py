"""A griffe extension: Sphinx roles in docstrings become Markdown for mkdocstrings.

The docstrings say ``:class:`~trio_dspy.messages.LMRequest``` as Sphinx
would. A role naming a ``trio_dspy`` object by its full path becomes a
cross-reference (which ``mkdocs build --strict`` checks); any other role, a
short name or an outside object, becomes inline code. ``~`` shows the last
part of the name only, as in Sphinx.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    shown = target.rsplit(".", 1)[-1] if short else target
    if target.startswith("trio_dspy."):
        return f"[`{shown}`][{target}]"
    return f"`{shown}`"


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_replace, obj.docstring.value)
