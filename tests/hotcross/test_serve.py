"""`python -m hotcross.serve` (what `make run` ends with): uvicorn that stops cleanly, with status 0, on Ctrl-C
(SIGINT) and SIGTERM, so `make` reports no error after a clean stop; a server that cannot start still fails."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.support.serve import serve_args, serve_env, serving
from tests.support.servers import ROOT, listening_socket


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_by_signal_is_a_clean_exit(tmp_path, signum):
    with serving(tmp_path) as server:
        server.process.send_signal(signum)
        returncode = server.process.wait(timeout=30)
        output = server.log()
    assert returncode == 0, output
    assert "Finished server process" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


def test_a_port_in_use_is_still_a_failure(tmp_path):
    with listening_socket() as taken:
        result = subprocess.run(
            serve_args(taken.getsockname()[1]),
            cwd=ROOT,
            env=serve_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout
