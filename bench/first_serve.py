"""Time from `make run` in a fresh clone to the first `/healthz` 200 (issue 31: target ≤ 60 s on a quiet machine).

Each run clones this repository's HEAD into a scratch folder and runs `make run PORT=<free port>` there as a newcomer
would — a new virtualenv (pip from its cache), the development .env, the database, the demo, uvicorn — and polls
`/healthz` every 0.1 s. `--baseline` runs also remove the migrated template (hotcross/sqlite_template.sql.gz) from the
clone, so the database is made by migrating, as before the template existed: same machine, same run. The phases'
times come from `make`'s own output lines (pip, template, migrate, seed, serve).

    python bench/first_serve.py [--runs 3] [--baseline-runs 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers import free_port  # noqa: E402

PHASES = (
    ("pip", "pip install"),
    ("template", "from the migrated template"),
    ("migrate", "manage.py migrate"),
    ("seed", "manage.py seed_demo"),
    ("serve", "-m hotcross.serve"),
)


def one_run(template: bool) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="first-serve-") as folder:
        clone = Path(folder) / "hotcross"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        if not template:
            (clone / "hotcross" / "sqlite_template.sql.gz").unlink()
        port = free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HOTCROSS_", "DATABASE_", "VIRTUAL_"))
        }
        started = time.monotonic()
        marks: dict[str, float] = {}
        log = open(Path(folder) / "make.log", "w+")
        process = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"make run exited with {process.returncode}:\n{log.read()[-3000:]}")
                log.seek(0)
                text = log.read()
                for name, needle in PHASES:
                    if name not in marks and needle in text:
                        marks[name] = time.monotonic() - started
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                        if answer.status == 200:
                            return time.monotonic() - started, marks
                except OSError:
                    pass
                if time.monotonic() - started > 600:
                    raise RuntimeError("no /healthz 200 within 600 s")
                time.sleep(0.1)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
            log.close()


def report(label: str, runs: list[tuple[float, dict[str, float]]]) -> float:
    totals = [total for total, _ in runs]
    print(f"{label}: runs {', '.join(f'{t:.1f}' for t in totals)} s; median {statistics.median(totals):.1f} s")
    for total, marks in runs:
        steps = " ".join(f"{name}@{at:.1f}s" for name, at in sorted(marks.items(), key=lambda item: item[1]))
        print(f"  {steps} healthz@{total:.1f}s")
    return statistics.median(totals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-runs", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    with_template = [one_run(True) for _ in range(args.runs)]
    baseline = [one_run(False) for _ in range(args.baseline_runs)]
    now = report("make run → /healthz 200, migrated template", with_template)
    if baseline:
        before = report("make run → /healthz 200, migrating (baseline, no template)", baseline)
        print(f"ratio template/baseline: {now / before:.2f}")
    print(f"target ≤ 60 s: {'met' if now <= 60 else 'NOT met'} (median {now:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
