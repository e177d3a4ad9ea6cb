"""The OS sandbox of an organization's upstream process: bubblewrap (`bwrap`, Debian's `bubblewrap`), with
util-linux's `prlimit` for its limits and, when the back office runs as root, `setpriv` for its uid.

`wrap(config, command, data_dir)` gives the command line that runs `command` sandboxed:

- a new root holding only read-only system folders (`SYSTEM_READ_ONLY`, `/usr` and a few of `/etc`), the operator's
  read-only paths (`HOTCROSS_MCP_UPSTREAM_SANDBOX_PATHS`: where the tool server is installed) and the organization's
  data folder, the only writable place (it is also HOME and the working directory), a private `/tmp`, `/proc`, `/dev`:
  no project folder, `.env`, SQLite file or other organization's folder exists in it;
- an unprivileged uid (`HOTCROSS_MCP_UPSTREAM_SANDBOX_UID`, 65534 `nobody` by default): run as root, bwrap keeps
  the host's user namespace and `setpriv` drops to that uid and every capability before the command starts, and the
  data folder is handed to that uid; run as another user, bwrap maps that user to the uid in a user namespace of its
  own (the files it writes are the back office user's, it reads nothing outside the sandbox);
- a network (`HOTCROSS_MCP_UPSTREAM_SANDBOX_NETWORK`): `none` (the default: a network namespace of its own, where
  nothing outside the sandbox is reachable, not even the host's 127.0.0.1: the real Hotcross server keeps its data
  on disk and needs none, and its `url()` was how an internal URL was fetched), `loopback` (the same namespace: a
  new network namespace always has its own loopback, so the two differ only in intent; a tool server that talks to
  helpers it starts itself on 127.0.0.1 works in both), `full` (the host's network);
- its own PID, IPC and UTS namespaces and session, and it dies with its parent;
- CPU seconds, data memory and open files limited (`HOTCROSS_MCP_UPSTREAM_CPU_SECONDS`, `..._MEMORY_MB`,
  `..._OPEN_FILES`): a process past its CPU time is killed by the kernel and started again by the restart rules.

`unavailable_reason()` says why bubblewrap cannot run here (None when it can): organization scope refuses to start
its processes then, unless the operator turned the sandbox off (`HOTCROSS_MCP_UPSTREAM_SANDBOX=off`), and
`manage.py check` says so (mcp_bridge.E012).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from upstream.config import UpstreamConfig

NETWORKS = ("none", "loopback", "full")
NOBODY = 65534
# Read-only in every sandbox, where they exist: what a program needs to run (its libraries, certificates, name
# resolution, time zone, the user database), nothing of the back office's.
SYSTEM_READ_ONLY = (
    "/usr",
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ssl",
    "/etc/pki",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/os-release",
    "/etc/mime.types",
)
# On a merged-/usr system these are symbolic links into /usr (kept as links); elsewhere folders (bound read-only).
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
INSTALL_HINT = "install Debian's bubblewrap (apt-get install bubblewrap)"


class SandboxError(RuntimeError):
    """The sandbox cannot be set up (bubblewrap missing or refused, a folder that cannot be handed over)."""


@functools.cache
def unavailable_reason() -> str | None:
    """Why bubblewrap cannot run a sandbox here (not installed, or the kernel refuses its namespaces), or None when it
    can; found once per process by running `true` in a sandbox like the upstreams'."""
    for tool in ("bwrap", "prlimit", "true") + (("setpriv",) if os.geteuid() == 0 else ()):
        if shutil.which(tool) is None:
            return f"{tool} is not installed ({INSTALL_HINT}; prlimit and setpriv are util-linux's)"
    # Run as another user than root, bwrap needs an unprivileged user namespace too (`wrap` maps the uid in one).
    user = [] if os.geteuid() == 0 else ["--unshare-user"]
    probe = [_tool("bwrap"), *_namespaces("none"), *user, *_root(()), "--", _tool("true")]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=10, check=False)  # noqa: S603 - our own arguments
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be run ({exc.__class__.__name__})"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return f"bwrap cannot make a sandbox here ({said[-1] if said else f'exit {done.returncode}'})"
    return None


def wrap(command: Sequence[str], data_dir: Path, config: UpstreamConfig) -> list[str]:
    """The command line that runs `command` in the sandbox `config` describes (network, read-only paths, uid,
    limits), `data_dir` (absolute, existing) its only writable folder, HOME and working directory. Raises
    `SandboxError` when bubblewrap cannot run here."""
    reason = unavailable_reason()
    if reason is not None:
        raise SandboxError(reason)
    uid = config.sandbox_uid
    data = str(data_dir)
    as_root = os.geteuid() == 0
    if as_root:
        hand_over(data_dir, uid)
    limits = [
        _tool("prlimit"),
        f"--cpu={config.cpu_seconds}",
        f"--data={config.memory_mb * 1024 * 1024}",
        f"--nofile={config.open_files}",
        "--",
    ]
    sandbox = [
        _tool("bwrap"),
        *_namespaces(config.sandbox_network),
        *_root(config.sandbox_paths, writable=data),
        "--bind",
        data,
        data,
        "--chdir",
        data,
        "--setenv",
        "HOME",
        data,
        "--setenv",
        "TMPDIR",
        "/tmp",  # noqa: S108 - the sandbox's own, private tmpfs
    ]
    if as_root:
        # bwrap keeps the host's user namespace (the uid is a real, unprivileged one) and lets setpriv change to it;
        # setpriv then drops every capability before the command starts.
        sandbox += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
        sandbox += [_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
        sandbox += ["--bounding-set=-all", "--"]
    else:
        sandbox += ["--unshare-user", "--uid", str(uid), "--gid", str(uid), "--"]
    return [*limits, *sandbox, *command]


def hand_over(data_dir: Path, uid: int) -> None:
    """Give `data_dir` and what is in it to `uid` (run as root: the sandboxed process runs as that uid)."""
    try:
        for folder, dirs, files in os.walk(data_dir):
            for name in (folder, *(os.path.join(folder, entry) for entry in dirs + files)):
                if os.lstat(name).st_uid != uid:
                    os.lchown(name, uid, uid)
    except OSError as exc:
        raise SandboxError(f"its data folder could not be handed to uid {uid} ({exc.__class__.__name__})") from None


def _namespaces(network: str) -> list[str]:
    shared = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    if network != "full":
        shared.append("--unshare-net")
    return [*shared, "--die-with-parent", "--new-session"]


def _root(read_only: Sequence[str], writable: str = "") -> list[str]:
    """The new root's folders and binds (the writable folder's bind is the caller's)."""
    binds = [*SYSTEM_READ_ONLY, *read_only, *([writable] if writable else [])]
    args = ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108 - a private one
    # The folders above each bind, made by bwrap in the new root: 0755, so the sandbox's uid can pass through them
    # (bwrap run as root makes them 0700).
    above = {str(parent) for path in binds for parent in Path(path).parents if str(parent) != "/"}
    for folder in sorted(above - set(binds), key=lambda item: (item.count("/"), item)):
        if not any(folder.startswith(bound.rstrip("/") + "/") for bound in binds):
            args += ["--perms", "0755", "--dir", folder]
    for path in SYSTEM_READ_ONLY:
        args += ["--ro-bind-try", path, path]
    for link in ROOT_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind-try", link, link]
    for path in read_only:
        args += ["--ro-bind-try", path, path]
    return args


def _tool(name: str) -> str:
    """The full path of a program the sandbox uses (found on PATH; `unavailable_reason` checked it is there)."""
    return shutil.which(name) or name


def visible(path: str, read_only: Sequence[str]) -> bool:
    """Whether `path` (absolute) is inside the sandbox's read-only folders."""
    resolved = os.path.realpath(path)
    for root in (*SYSTEM_READ_ONLY, *read_only):
        for candidate in (root, os.path.realpath(root)):
            if resolved == candidate or resolved.startswith(candidate.rstrip("/") + "/"):
                return True
    return False
