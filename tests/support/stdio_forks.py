"""A fork server for `manage.py` commands that speak over stdio: Django and the bridge imported once, then one fork per
process asked for, so that a stdio server starts in milliseconds instead of ~2 s of imports (the stdio harness starts
one per MCP session: `tests.support.stdio_harness --fork`).

`python -m tests.support.stdio_forks FD COMMAND…` (FD: its end of a Unix socket pair, the environment the commands'
own): for every message on the socket (its two file descriptors: the child's stdin and stdout), a child that makes
them its fd 0 and 1 and runs `manage.py COMMAND…` (`execute_from_command_line`), its stderr the server's; the pid goes
back on the socket. Children are reaped here; a child ends as the command does (a stdio server: when stdin closes).
The server exits when the socket closes.
"""

from __future__ import annotations

import os
import signal
import socket
import sys


def preload() -> None:
    import django

    django.setup()
    # What `manage.py mcp_server` imports on its way to serving (the heavy part of its start).
    import mcp_bridge.management.commands.mcp_server
    import mcp_bridge.server  # noqa: F401


def child(stdin: int, stdout: int, command: list[str]) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.close(stdin)
    os.close(stdout)
    from django.core.management import execute_from_command_line

    code = 0
    try:
        execute_from_command_line(["manage.py", *command])
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> int:
    control = socket.socket(fileno=int(sys.argv[1]))
    command = sys.argv[2:]
    preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        message, fds, _flags, _address = socket.recv_fds(control, 16, 2)
        if not message:
            return 0
        stdin, stdout = fds
        pid = os.fork()
        if pid == 0:
            control.close()
            child(stdin, stdout, command)
        os.close(stdin)
        os.close(stdout)
        control.sendall(f"{pid}\n".encode())


if __name__ == "__main__":
    raise SystemExit(main())
