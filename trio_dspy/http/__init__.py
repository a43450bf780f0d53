"""The HTTP layer under the LM clients: a per-run connection pool and its helpers."""

from ..runlocal import RunLocal
from .client import HTTPClient, Reply, StreamReply, TransportFailure
from .secret import Secret

__all__ = [
    "HTTPClient",
    "Reply",
    "RunLocal",
    "Secret",
    "StreamReply",
    "TransportFailure",
]
