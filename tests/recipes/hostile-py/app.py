"""Tries to reach the host through WASI and reports each attempt's outcome in
`outputs`: `denied: <exception>` or `ALLOWED: <what it got>`."""

import os
import socket

import proximity as px


def attempt(action):
    try:
        return "ALLOWED: " + repr(action())[:200]
    except BaseException as err:  # noqa: BLE001 - every failure is the expected outcome
        return "denied: " + type(err).__name__


def read_passwd():
    with open("/etc/passwd") as f:
        return f.read()


def write_file():
    with open("/tmp/proximity-hostile-py", "w") as f:
        return f.write("x")


def connect(port):
    def go():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        return s
    return go


class Hostile(px.Recipe):
    def install(self, ctx):
        port = ctx.param_int("port")
        print("probing the sandbox")
        outputs = {
            "read-file": attempt(read_passwd),
            "write-file": attempt(write_file),
            "list-root": attempt(lambda: os.listdir("/")),
            "list-cwd": attempt(lambda: os.listdir(".")),
            "environment": "ALLOWED: " + repr(dict(os.environ)) if os.environ else "denied: empty",
            "connect": attempt(connect(port)),
            "resolve": attempt(lambda: socket.getaddrinfo("localhost", port)),
        }
        return px.AppInfo(outputs=list(outputs.items()))


Lifecycle = px.export(Hostile)
