"""Redis URLs: checked when a Redis-backed object is built, and shown without their password.

coredis reads a URL only when the first command is sent, and reads a
malformed one silently wrong: a password holding ``#``, ``/`` or ``?`` cuts
the address short (the rest of the password lands in the fragment, path or
query, where a repr shows it), leaves no host, and every call then fails
inside coredis with a bare ``AssertionError``. :func:`check_redis_url`
refuses such URLs with a ``ValueError`` when the object is built instead.
Its messages never quote the URL, since a malformed URL may have its
password anywhere; the forms accepted are those coredis connects with:

* ``redis://[[user]:password@]host[:port][/db][?option=value&...]``
  (``rediss://`` for TLS);
* ``unix://[[user]:password@]/path/to/redis.sock[?db=0&...]`` (or
  ``unix:/path/to/redis.sock``).

User name, password, host and socket path are percent-decoded, so any
character can be written in them as ``%XX`` (``#`` as ``%23``).
"""

from __future__ import annotations

import math
import re
import urllib.parse

__all__ = ["check_redis_url", "public_redis_url"]

_FORMS = (
    "redis://[:password@]host[:port][/db], rediss://... (TLS) "
    "or unix://[:password@]/path/to/redis.sock"
)
_ENCODE = (
    "percent-encode every '#', '/', '?' and '@' in the user name and password "
    "(as %23, %2F, %3F and %40; urllib.parse.quote(password, safe='') does it)"
)
# Query options coredis reads as numbers, and the least each may be.
_INT_OPTIONS = {"db": 0, "max_connections": 1, "timeout": 0, "max_idle_time": 0}
_FLOAT_OPTIONS = ("stream_timeout", "connect_timeout")
# Query parameters that carry credentials (coredis reads ``?password=``, the
# usual form for ``unix://`` sockets).
_SECRET_QUERY = frozenset({"password", "username"})
_DB_PATH = re.compile(r"/?[0-9]*")


def check_redis_url(url: str) -> str:
    """Check that coredis can connect with ``url``; return it without its password.

    Raises:
        TypeError: ``url`` is not a string.
        ValueError: ``url`` is not one of the forms coredis connects with: no
            or another scheme, a password with an unencoded ``#``, ``/`` or
            ``?``, no host (or a host in a ``unix://`` URL), a bad port, a path
            that is not a database number, or a numeric option that is not a
            number. The message says which, and never quotes the URL.
    """
    if not isinstance(url, str):
        raise TypeError(f"a Redis URL is a string, got {type(url).__name__}")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an unbalanced '[' in the host
        raise ValueError(f"not a Redis URL: expected {_FORMS}; {_ENCODE}") from None
    scheme = parts.scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"a Redis URL has the form {_FORMS}{_scheme_seen(url)}")
    if "@" in f"{parts.path}?{parts.query}#{parts.fragment}":
        # Only a user name or password cut short by '/', '?' or '#' puts an '@' there.
        raise ValueError(
            "the Redis URL has an '@' after its address, as when a password holding "
            f"'#', '/' or '?' cuts the address short: {_ENCODE}"
        )
    if parts.fragment or url.endswith("#"):
        raise ValueError(f"a Redis URL has no '#' part: {_ENCODE}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the Redis URL's port must be a number from 1 to 65535") from None
    if scheme == "unix":
        if parts.hostname:
            raise ValueError(
                "a unix:// Redis URL names no host: unix:///path/to/redis.sock "
                "(unix://:password@/path/to/redis.sock)"
            )
        if not parts.path.strip("/"):
            raise ValueError("the unix:// Redis URL names no socket: unix:///path/to/redis.sock")
    else:
        if not parts.hostname:
            raise ValueError(f"the Redis URL names no host: expected {_FORMS}; {_ENCODE}")
        if port == 0:
            raise ValueError("the Redis URL's port must be a number from 1 to 65535")
        if not _DB_PATH.fullmatch(parts.path):
            raise ValueError("the path of a Redis URL is the database number (redis://host:6379/0)")
    _check_query(parts.query)
    return public_redis_url(url)


def _scheme_seen(url: str) -> str:
    """What the URL starts with, when that cannot be part of a password."""
    head, sep, _ = url.partition("://")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", head):
        return f", not {head}://"
    return " (it has no scheme)"


def _check_query(query: str) -> None:
    """Refuse a numeric option coredis would fail to read; never quote a value."""
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if not value:
            continue  # coredis skips empty values
        if name in _INT_OPTIONS:
            least = _INT_OPTIONS[name]
            try:
                ok = int(value) >= least
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"the Redis URL's {name} option must be an integer of at least {least}"
                )
        elif name in _FLOAT_OPTIONS:
            try:
                ok = math.isfinite(seconds := float(value)) and seconds > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"the Redis URL's {name} option must be a positive number")


def public_redis_url(url: str) -> str:
    """``url`` without its password, in the address or the query (for reprs and messages).

    Only sound for a URL :func:`check_redis_url` accepts: in a malformed one
    the password may sit anywhere.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        parts = parts._replace(netloc=user + host)
    if parts.query:
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        masked = [(k, "***" if k.lower() in _SECRET_QUERY else v) for k, v in query]
        parts = parts._replace(query=urllib.parse.urlencode(masked, safe="*"))
    return urllib.parse.urlunsplit(parts)
