"""Mails sent off the request path (sign-in codes, invitations, owners' alerts): one daemon thread per process takes
them from a bounded queue, so a start for a developer's address answers as fast as one for an unknown address (the
SMTP exchange happens after the answer, issue 26 item 4).

A mail that cannot be sent is logged without its content (the code is in it); one that finds the queue full is
dropped and logged (the developer can ask for another code). `wait_idle()` lets tests and a stopping process wait
until every queued mail has been handed to the email backend.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail

logger = logging.getLogger(__name__)

QUEUE_SIZE = 100
EXIT_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Mail:
    subject: str
    message: str
    to: str
    code_id: int = 0  # for the log: never the code
    kind: str = "sign-in"  # for the log


class _Worker:
    def __init__(self, size: int) -> None:
        self._size = size
        self._ready = threading.Condition()
        self._mails: collections.deque[Mail] = collections.deque()
        self._pending = 0  # queued or being sent
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def submit(self, mail: Mail) -> bool:
        with self._ready:
            if self._pid != os.getpid():  # a forked child has the parent's queue but not its thread
                self._mails.clear()
                self._pending, self._thread, self._pid = 0, None, os.getpid()
            if self._pending >= self._size:
                logger.warning("%s mail dropped, the queue is full code_id=%s", mail.kind, mail.code_id)
                return False
            self._mails.append(mail)
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sign-in-mail", daemon=True)
                self._thread.start()
            self._ready.notify_all()
        return True

    def wait_idle(self, timeout: float) -> bool:
        with self._ready:
            return self._ready.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._mails))
                mail = self._mails.popleft()
            try:
                send_mail(subject=mail.subject, message=mail.message, from_email=None, recipient_list=[mail.to])
            except Exception as error:  # the thread lives on; the error's text may quote the mail, so only its kind
                logger.error("%s mail not sent code_id=%s error=%s", mail.kind, mail.code_id, type(error).__name__)
            else:
                logger.info("%s mail sent code_id=%s", mail.kind, mail.code_id)
            finally:
                with self._ready:
                    self._pending -= 1
                    self._ready.notify_all()


_worker = _Worker(QUEUE_SIZE)


def link(path: str) -> str:
    """The site's absolute address of `path` (`/org/billing/`), for a mail: HOTCROSS_PUBLIC_URL + path."""
    return f"{settings.HOTCROSS_PUBLIC_URL.rstrip('/')}{path}"


def send_later(mail: Mail) -> bool:
    """Queue `mail` for the process's mail thread; False (and logged) when the queue is full."""
    return _worker.submit(mail)


def wait_idle(timeout: float = 10.0) -> bool:
    """Wait until every mail queued so far has been sent (or failed); False when `timeout` seconds were not enough."""
    return _worker.wait_idle(timeout)


atexit.register(wait_idle, EXIT_WAIT_SECONDS)
