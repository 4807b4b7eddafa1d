"""Support for tests/test_browser.py: a headless JupyterLab server and a headless Chromium driven by Playwright.

Why a real browser: nbval runs every notebook through a kernel but never renders it, so it cannot see a widget that
does not redraw, a figure that does not show, or a menu route that fails. These helpers do what a learner does:
open the notebook in JupyterLab, Run -> Run All Cells from the menu, drag a slider with the mouse.

Nothing here downloads a browser: Chromium comes from the operating system (Debian's `chromium` package) and
Playwright only drives it through `executable_path`. Nothing here runs on import.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

CHROMIUM_HINT = "apt-get install -y chromium (or run COURSE_INSTALL_BROWSER=1 make test, which does it first)"
PLAYWRIGHT_HINT = "make setup (pip install -r requirements/lock.txt pins playwright; it downloads no browser)"

# As root on a machine without a display or a network: no sandbox, no GPU, and none of Chromium's own background
# connections (update checks, sync, QUIC), which a closed network refuses and which would only slow start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# Settings for this throw-away JupyterLab (its own settings dir, so a user's settings cannot change the test): render
# every cell (no windowing: every prompt and output is in the page) and fetch no news or updates.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                      "checkForUpdates": False},
}


def find_chromium() -> str | None:
    """Path of the system Chromium: $COURSE_CHROMIUM if set, else the first of the usual names on PATH."""
    explicit = os.environ.get("COURSE_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it by binding port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_lab_settings(settings_dir: pathlib.Path) -> None:
    for relative, values in LAB_SETTINGS.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def server_environment(base: pathlib.Path) -> dict[str, str]:
    """Environment of the server and so of its kernels: always the smoke profile (the test checks what a learner
    sees, not the scale, so `make test PROFILE=cpu` does not turn it into cpu-sized runs), offline, the test suite's
    socket guard kept on PYTHONPATH, MPLBACKEND removed (Agg would hide the figures), Jupyter's own dirs in `base`."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.update(COURSE_PROFILE="smoke", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    config_dir, runtime_dir = base / "jupyter-config", base / "jupyter-runtime"
    settings_dir, workspaces_dir = base / "lab-settings", base / "lab-workspaces"
    for folder in (config_dir, runtime_dir, settings_dir, workspaces_dir):
        folder.mkdir(parents=True, exist_ok=True)
    _write_lab_settings(settings_dir)
    env.update(JUPYTER_CONFIG_DIR=str(config_dir), JUPYTER_RUNTIME_DIR=str(runtime_dir),
               JUPYTERLAB_SETTINGS_DIR=str(settings_dir), JUPYTERLAB_WORKSPACES_DIR=str(workspaces_dir))
    return env


class JupyterLabServer:
    """A JupyterLab subprocess on a free loopback port with a random token, serving `root_dir`.

    Use it as a context manager: leaving the block terminates the server and its kernels, even after a failure.
    """

    def __init__(self, root_dir: pathlib.Path, log_path: pathlib.Path, start_timeout: float = 90.0):
        self.root_dir, self.log_path, self.start_timeout = root_dir, log_path, start_timeout
        self.port, self.token = free_port(), secrets.token_hex(24)
        self.process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "jupyter", "lab", "--no-browser",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
                "--ServerApp.terminals_enabled=False",
                # No network from the server: no news feed, no update check, no PyPI extension manager.
                "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
                # CI containers run as root; Jupyter refuses that unless told (the server only listens on loopback).
                *(["--allow-root"] if os.geteuid() == 0 else [])]

    def __enter__(self) -> "JupyterLabServer":
        self._log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command(), cwd=self.root_dir, env=server_environment(self.root_dir),
                                        stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        url = f"{self.base_url}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer {url} within {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def _request_shutdown(self) -> None:
        """Ask the server to shut down its kernels and itself (POST /api/shutdown)."""
        request = urllib.request.Request(f"{self.base_url}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {self.token}"})
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=5).close()

    def _kernel_pids(self) -> list[int]:
        """Processes whose command line names this server's runtime dir: its kernels (each in its own session)."""
        marker = str(self.root_dir / "jupyter-runtime")
        pids = []
        for proc in pathlib.Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if marker in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
        return pids

    def stop(self) -> None:
        """Stop the server and its kernels: the REST shutdown first, then SIGTERM/SIGKILL for anything left."""
        if self.process is not None and self.process.poll() is None:
            self._request_shutdown()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        for pid in self._kernel_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, n_chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return "--- JupyterLab log (tail) ---\n" + self.log_path.read_text(errors="replace")[-n_chars:]
        return "(no JupyterLab log)"

    def notebook_url(self, relative_path: str) -> str:
        return f"{self.base_url}/lab/tree/{relative_path}?token={self.token}"
