"""A griffe extension: docstrings' Sphinx roles become mkdocstrings Markdown.

The docstrings say ``:class:`~trio_dspy.messages.LMRequest``` as Sphinx
would. A role naming a ``trio_dspy`` object by its full path becomes a
cross-reference: a link where the reference documents the object, inline
code where it does not (a private helper), and, when no such object exists,
an error of ``mkdocs build --strict``. Any other role, a short name or an
outside object, becomes inline code. ``~`` shows the last
part of the name only, as in Sphinx. reST's ``::`` before a literal block
becomes ``:``, or goes when it stands on its own line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import griffe

# reST's literal-block marker: a paragraph ending in "::" (shown as ":") or a
# "::" line of its own (dropped); the indented block after it is code in
# Markdown already.
_LITERAL_LINE = re.compile(r"^[ \t]*::[ \t]*\n", re.M)
_LITERAL_END = re.compile(r"(?<=\S)::$", re.M)
_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`"
)


def _exists(package: griffe.Module, target: str) -> bool:
    """Whether ``target`` (``trio_dspy.x.y``) names an object of ``package``."""
    try:
        obj = package[target.removeprefix(package.path + ".")]
        if obj.is_alias:
            obj.final_target  # noqa: B018 (resolving it is the check)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def _replace(package: griffe.Module, match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    shown = target.rsplit(".", 1)[-1] if short else target
    if not target.startswith(package.path + "."):
        return f"`{shown}`"
    if _exists(package, target):
        # A real object: a link where the reference documents it, plain
        # code where it does not (a private helper, an undocumented attribute).
        code = f"<code>{shown}</code>"
        return f'<autoref identifier="{target}" optional>{code}</autoref>'
    # No such object (a typo, a renamed or moved name): a required reference,
    # which ``mkdocs build --strict`` reports.
    return f"[`{shown}`][{target}]"


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and every object defined inside it (aliases left out)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Called by griffe 2 once the package is loaded."""
        for obj in _objects(pkg):
            if obj.docstring is not None:
                text = _ROLE.sub(partial(_replace, pkg), obj.docstring.value)
                text = _LITERAL_END.sub(":", _LITERAL_LINE.sub("", text))
                obj.docstring.value = text

    # griffe 1's name for the same moment.
    on_package_loaded = on_package
