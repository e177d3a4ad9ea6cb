"""A slow SMTP sink: a real SMTP server on a free 127.0.0.1 port, in a thread of the test process, that waits
`delay` seconds before each reply (a remote mail server's round trips) and keeps what it receives.

Enough SMTP for Django's SMTP email backend and smtplib (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS, no
AUTH). Use it as a context manager:

    with SlowSmtpSink(delay=0.1) as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
        ...
        sink.wait_for(1)
"""

from __future__ import annotations

import socketserver
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    message: Message

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        return payload.decode(self.message.get_content_charset() or "utf-8") if payload else ""


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _reply(self, line: str) -> None:
        time.sleep(self.server.delay)
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self._reply("220 sink ESMTP")
        sender, recipients = "", []
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").strip()
            verb = command[:4].upper()
            if verb == "EHLO":
                time.sleep(self.server.delay)
                self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
                self.wfile.flush()
            elif verb == "HELO":
                self._reply("250 sink")
            elif verb == "MAIL":
                sender, recipients = command.partition(":")[2].strip(" <>"), []
                self._reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.partition(":")[2].strip(" <>"))
                self._reply("250 OK")
            elif verb == "DATA":
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                data = bytearray()
                while (chunk := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                self._reply("250 OK queued")
                self.server.keep(Received(sender, tuple(recipients), message_from_bytes(bytes(data))))
            elif verb in ("RSET", "NOOP"):
                self._reply("250 OK")
            elif verb == "QUIT":
                self._reply("221 Bye")
                return
            else:
                self._reply("502 Command not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = delay
        self.received: list[Received] = []
        self.arrived = threading.Condition()

    def keep(self, mail: Received) -> None:
        with self.arrived:
            self.received.append(mail)
            self.arrived.notify_all()


class SlowSmtpSink:
    def __init__(self, delay: float = 0.1) -> None:
        self._server = _Server(delay)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def received(self) -> list[Received]:
        with self._server.arrived:
            return list(self._server.received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The mails received once there are `count` of them; AssertionError after `timeout` seconds."""
        with self._server.arrived:
            if not self._server.arrived.wait_for(lambda: len(self._server.received) >= count, timeout):
                raise AssertionError(f"{len(self._server.received)} of {count} mails arrived in {timeout} s")
            return list(self._server.received)

    def __enter__(self) -> SlowSmtpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
