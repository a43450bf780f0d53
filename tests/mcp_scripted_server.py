"""An MCP server over stdio that says whatever its client scripts, for hostile-server tests.

It does not use the MCP SDK (so it starts in milliseconds and can send what
the SDK never would). It answers ``initialize`` and ``tools/list`` (one tool,
``reply``) and answers ``tools/call`` of ``reply`` with the JSON-RPC response
``{"jsonrpc": "2.0", "id": <the request's id>, <raw>}``, where ``raw`` is the
call's ``raw`` argument written as it is: ``"result": "string"``, an error
object, content of the wrong type, or text that is not JSON at all. A ``raw``
of ``""`` is never answered, and one of ``"exit"`` ends the server instead.
A ``raw`` of ``"base64:<data>"`` is bytes, written after ``"result": `` as
they are (invalid UTF-8 included).

Options: ``--silent`` never answers ``initialize``; ``--grandchild PATH``
starts a process that sleeps for an hour, sharing the server's standard
streams, and writes its pid to ``PATH`` before answering anything;
``--pidfile PATH`` writes the server's own pid there.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from typing import Any

TOOL = {
    "name": "reply",
    "description": "Answers with the raw JSON-RPC response members it is given.",
    "inputSchema": {
        "type": "object",
        "properties": {"raw": {"type": "string"}},
        "required": ["raw"],
    },
}


def send(text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()


def answer(request: dict[str, Any], silent: bool) -> None:
    """Answer one request (notifications get nothing)."""
    if "id" not in request:
        return
    ident = json.dumps(request["id"])
    method = request.get("method")
    if method == "initialize":
        if silent:
            return
        result: dict[str, Any] = {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "scripted", "version": "0"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        raw = request["params"]["arguments"]["raw"]
        if raw == "exit":
            sys.exit(0)
        if raw.startswith("base64:"):
            result_bytes = base64.b64decode(raw.removeprefix("base64:"))
            send(b'{"jsonrpc": "2.0", "id": %s, "result": %s}' % (ident.encode(), result_bytes))
        elif raw:
            send(f'{{"jsonrpc": "2.0", "id": {ident}, {raw}}}')
        return
    else:
        result = {}
    send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--silent", action="store_true", help="never answer initialize")
    parser.add_argument("--grandchild", metavar="PATH", help="start a sleeper, its pid to PATH")
    parser.add_argument("--pidfile", metavar="PATH", help="write the server's pid to PATH")
    options = parser.parse_args()
    if options.pidfile:
        with open(options.pidfile, "w") as file:
            file.write(str(os.getpid()))
    if options.grandchild:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(options.grandchild, "w") as file:
            file.write(str(sleeper.pid))
    for line in sys.stdin:  # until the client closes our stdin
        answer(json.loads(line), options.silent)


if __name__ == "__main__":
    main()
