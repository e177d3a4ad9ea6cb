"""A TCP proxy in front of a real service (the database, Redis) that a test can cut or turn into a black hole, while
the service keeps running for everyone else."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the database, and fails in the two ways a database can go away:

    - `cut()`: refused. Every connection is dropped, and new ones end at once, until `restore()`.
    - `black_hole()`: no answer. Connections stay open and whatever is sent is taken and dropped (as a network that
      drops packets, without an RST), and new connections are accepted and never answered, until `restore()`; the
      connections it swallowed stay dead.

    The shared PostgreSQL keeps running for everyone else; only connections through this proxy see an outage.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._mode = "up"
        self._open: set[socket.socket] = set()
        self._dead: set[socket.socket] = set()  # sockets whose traffic is swallowed
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._mode = "refused"
            self._close_all()

    def black_hole(self) -> None:
        with self._lock:
            self._mode = "black_hole"
            self._dead.update(self._open)

    def restore(self) -> None:
        with self._lock:
            self._mode = "up"

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._close_all()
        self._listener.close()

    def _close_all(self) -> None:
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()
        self._dead.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
                if mode == "black_hole":
                    self._open.add(client)
                    self._dead.add(client)
            if mode == "refused":
                client.close()  # the database is "down": the connection ends at once
                continue
            if mode == "black_hole":
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket | None) -> None:
        try:
            while data := source.recv(65536):
                if sink is None or source in self._dead:
                    continue  # swallowed
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
