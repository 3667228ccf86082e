#!/usr/bin/env python3
"""The sample service of `pahlevan demo`: a small shop API with the kind of bugs real services have.

Normal endpoints: /health, /api/items, /api/items/<id>, /static?name=<file>, /api/version (runs a helper binary),
/quit (stops the server).
The same handlers can be abused (the attack script does): /static with `../` reads files outside the static
directory, /api/version with a `cmd` parameter runs any binary, /api/webhook?port=N connects out, /debug/trace calls
ptrace(2), the first step of injecting code into a process. Every reply is JSON; a refused operation answers {"ok": false, "errno": "EPERM", ...} so the client
sees what the kernel said.
Usage: service.py PORT STATIC_DIR
"""
import ctypes
import errno
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LIBC = ctypes.CDLL(None, use_errno=True)
SYS_GETPPID = 110
SYS_PTRACE = 101
PTRACE_TRACEME = 0
ITEMS = {str(i): {"id": i, "name": name, "price": price}
         for i, (name, price) in enumerate([("tea", 3), ("bread", 2), ("cheese", 7), ("olives", 5)], 1)}
PORT = int(sys.argv[1])
STATIC_DIR = sys.argv[2]


def failure(err):
    code = err.errno if isinstance(err, OSError) and err.errno else errno.EIO
    return {"ok": False, "errno": errno.errorcode.get(code, str(code)), "error": str(err)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            status, body = self.route(url.path, query)
        except OSError as err:
            status, body = 403 if err.errno in (errno.EPERM, errno.EACCES) else 500, failure(err)
        except Exception as err:  # noqa: BLE001 - a demo service answers everything
            status, body = 500, {"ok": False, "error": repr(err)}
        self.reply(status, body)

    def route(self, path, query):
        if path == "/health":
            # A raw syscall through ctypes, as the abused /debug/trace does: its machinery is learned here.
            ppid = LIBC.syscall(SYS_GETPPID)
            return 200, {"ok": True, "ppid": ppid}
        if path == "/api/items":
            return 200, {"ok": True, "items": list(ITEMS.values())}
        if path.startswith("/api/items/"):
            item = ITEMS.get(path.rsplit("/", 1)[1])
            return (200, {"ok": True, "item": item}) if item else (404, {"ok": False, "error": "no such item"})
        if path == "/static":
            # Bug: no normalisation, so name=../secrets/x escapes the static directory.
            with open(os.path.join(STATIC_DIR, query.get("name", "index.html")), "rb") as f:
                content = f.read()
            return 200, {"ok": True, "bytes": len(content), "content": content.decode(errors="replace")[:200]}
        if path == "/api/version":
            # Bug: the helper binary comes from the request.
            cmd = query.get("cmd", "/usr/bin/uname -sr").split()
            # No timeout: with one, subprocess polls with sleeps whose number depends on timing.
            out = subprocess.run(cmd, capture_output=True, check=False)
            return 200, {"ok": out.returncode == 0, "output": out.stdout.decode(errors="replace").strip(),
                         "status": out.returncode}
        if path == "/api/webhook":
            # Bug: posts an order notification to any port the caller names.
            with socket.create_connection(("127.0.0.1", int(query["port"])), timeout=3) as s:
                s.sendall(b"order placed\n")
            return 200, {"ok": True, "sent": True}
        if path == "/debug/trace":
            # PTRACE_TRACEME needs no capability: it works wherever seccomp lets ptrace through.
            result = LIBC.syscall(SYS_PTRACE, PTRACE_TRACEME, 0, 0, 0)
            if result != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
            return 200, {"ok": True, "ptrace": "PTRACE_TRACEME succeeded"}
        if path == "/quit":
            # Ends serve_forever from another thread; the process then exits 0 (the demo stops it this way).
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return 200, {"ok": True, "quitting": True}
        return 404, {"ok": False, "error": "not found"}


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"listening on 127.0.0.1:{PORT}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
