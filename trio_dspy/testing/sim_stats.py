"""``SimStats``: the counters of a running simulated server.

Its own module so that the server (``sim_server.py``) and its streamed
answers (``sim_stream.py``) both count into it without importing each other.
"""

from __future__ import annotations

import attrs

__all__ = ["SimStats"]


@attrs.define
class SimStats:
    """Counters of a running :class:`SimServer`.

    ``requests`` counts completion and embeddings requests received (the
    numbering fault rules use), ``ok`` those answered with a completion or
    vectors, ``errors`` the 4xx answers that were not injected faults (auth,
    refusals, bad bodies), ``faults`` the injected faults by kind;
    ``in_flight`` and ``max_in_flight`` count those requests being handled at
    once; ``embeddings`` counts embeddings requests and ``embedded`` the texts
    they carried;
    ``streams`` counts streamed answers begun, ``streams_abandoned`` those
    whose client went away before their end.
    """

    requests: int = 0
    ok: int = 0
    errors: int = 0
    faults: dict[str, int] = attrs.field(factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    streams: int = 0
    streams_abandoned: int = 0
    embeddings: int = 0
    embedded: int = 0

    @property
    def faults_injected(self) -> int:
        """All injected faults, whatever their kind."""
        return sum(self.faults.values())
