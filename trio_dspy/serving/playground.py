"""The playground page served at ``GET /``: static HTML and a script shipped in the package.

No CDN and no build step: the page asks ``GET /programs`` for the schemas,
makes a form from the chosen program's inputs, and reads
``POST /programs/{name}/stream`` as its events arrive.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["PAGE", "SCRIPT"]

_STATIC = files(__package__).joinpath("static")
#: The page's HTML.
PAGE: bytes = _STATIC.joinpath("playground.html").read_bytes()
#: Its script, served at ``/playground.js``.
SCRIPT: bytes = _STATIC.joinpath("playground.js").read_bytes()
