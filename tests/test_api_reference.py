"""The API reference's Sphinx roles: real objects link, missing ones fail the build."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import griffe

ROOT = Path(__file__).resolve().parent.parent


def _roles() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rst_roles", ROOT / "docs" / "rst_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_role_links_a_real_object_and_leaves_a_missing_one_to_fail_the_build() -> None:
    roles = _roles()
    package = griffe.load("trio_dspy", search_paths=[str(ROOT)])
    assert isinstance(package, griffe.Module)

    def rewrite(text: str) -> str:
        result: str = roles._ROLE.sub(functools.partial(roles._replace, package), text)
        return result

    # An object that exists, documented or not: an optional reference.
    assert rewrite(":class:`~trio_dspy.messages.LMRequest`") == (
        '<autoref identifier="trio_dspy.messages.LMRequest" optional><code>LMRequest</code></autoref>'
    )
    assert "optional" in rewrite(":data:`trio_dspy.lm.params.MALFORMED`")
    # No such object: a required reference, which mkdocs build --strict reports.
    assert rewrite(":func:`trio_dspy.no_such_function`") == (
        "[`trio_dspy.no_such_function`][trio_dspy.no_such_function]"
    )
    # Outside the package: inline code.
    assert rewrite(":class:`trio.Nursery`") == "`trio.Nursery`"


def test_loading_the_package_rewrites_every_docstring() -> None:
    # The rewrite runs from griffe's hook once the package is loaded: a hook
    # griffe never calls would leave ":class:`...`" on every reference page.
    roles = _roles()
    extensions = griffe.load_extensions(roles.SphinxRoles)
    package = griffe.load("trio_dspy", search_paths=[str(ROOT)], extensions=extensions)
    assert isinstance(package, griffe.Module)
    docstrings = [o.docstring.value for o in roles._objects(package) if o.docstring is not None]
    assert len(docstrings) > 500
    left = [d[:60] for d in docstrings if roles._ROLE.search(d) or d.rstrip().endswith("::")]
    assert not left
    # reST's literal-block marker: "text::" ends in ":", a "::" line goes.
    counts = package["modules.best_of_n.BestOfN"].docstring
    assert counts is not None and "\n::\n" not in counts.value
