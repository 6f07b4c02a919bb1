"""The files of the viewer's browser sessions: one work folder each under one temporary root,
bounded in size, removed when the session ends or sits idle, when a request that created it
fails, and when the server stops (SIGINT, SIGTERM or a normal exit)."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from nvs.io.untrusted import LimitExceeded

SESSION_DISK_BYTES = 2 << 30  # a session's uploads, reconstruction and videos together
SESSION_TTL_S = 3 * 3600  # a session's scene and files go after this long without a new scene


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files below ``path`` (links are not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class SessionFolders:
    """Work folders of the sessions of one server, all under ``root``."""

    def __init__(self, disk_limit: int = SESSION_DISK_BYTES, idle_s: float = SESSION_TTL_S):
        self.root = Path(tempfile.mkdtemp(prefix="nvs-app-"))
        self.disk_limit, self.idle_s = disk_limit, idle_s
        self._last_used: dict[Path, float] = {}
        self._lock = threading.Lock()
        atexit.register(self.cleanup)

    def new(self) -> Path:
        self.sweep()
        work = Path(tempfile.mkdtemp(dir=self.root))
        self.touch(work)
        return work

    def touch(self, work: Path) -> None:
        with self._lock:
            self._last_used[Path(work)] = time.monotonic()

    def sweep(self) -> None:
        """Remove folders of sessions idle for longer than ``idle_s`` (their browser never closed,
        or gradio dropped the session without telling)."""
        now = time.monotonic()
        with self._lock:
            stale = [w for w, t in self._last_used.items() if now - t > self.idle_s]
            for work in stale:
                del self._last_used[work]
        for work in stale:
            shutil.rmtree(work, ignore_errors=True)

    def drop(self, work: Path) -> None:
        with self._lock:
            self._last_used.pop(Path(work), None)
        shutil.rmtree(work, ignore_errors=True)

    def check_disk(self, work: Path, incoming: int = 0) -> None:
        used = folder_bytes(work) + incoming
        if used > self.disk_limit:
            raise LimitExceeded(f"this session's files take {used / 2**20:.0f} MiB, more than the "
                                f"{self.disk_limit / 2**20:.0f} MiB a session may use")

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def remove_on_signals(self) -> None:
        """SIGINT and SIGTERM remove every session's files, then stop the server as Ctrl-C does."""
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum, frame):
            self.cleanup()
            raise KeyboardInterrupt

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)


def check_port(host: str, port: int) -> None:
    """ValueError naming --port or --host when the server could not listen there."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"--host {host}: not an address this machine can serve on ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server does
        try:
            probe.bind(address)
        except OSError as exc:
            raise ValueError(f"--port {port}: {host}:{port} is not available ({exc.strerror}); "
                             "another program is using it, choose another --port") from None
