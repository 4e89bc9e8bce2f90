"""Starts and stops the local services `make run` needs; Ctrl-C stops every one it started."""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import psycopg
import requests

from fare_assets.settings import PROJECT_ROOT, env_or_default, load_settings
from fare_assets.storing import warehouse
from fare_assets.storing.postgres import PostgresError, embedded_cluster, find_bin_dir

JAVA_HINT = "install Java 17 or newer: `apt-get install -y openjdk-17-jre-headless` (Debian/Ubuntu)"


class MissingPrerequisite(RuntimeError):
    """Something the platform needs is not installed; the message says how to install it."""


def _java_home_java() -> str | None:
    """$JAVA_HOME/bin/java when JAVA_HOME is set: the Java Spark starts then, whatever PATH holds."""
    java_home = env_or_default("JAVA_HOME", "")
    return os.path.join(java_home, "bin", "java") if java_home else None


def java_major_version() -> int | None:
    """The major version of the Java Spark starts: $JAVA_HOME's when set, else the one on PATH."""
    java = _java_home_java() or shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        return None
    output = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 else major


def check_prerequisites() -> None:
    """Java 17+ for Spark and the PostgreSQL server binaries for the embedded cluster."""
    major = java_major_version()
    if major is None:
        where = f" at $JAVA_HOME/bin/java ({java})" if (java := _java_home_java()) else ""
        raise MissingPrerequisite(f"Java not found{where}: {JAVA_HINT}")
    if major < 17:
        raise MissingPrerequisite(f"Java {major} found, Spark 4 needs 17+: {JAVA_HINT}")
    try:
        find_bin_dir()
    except PostgresError as error:
        raise MissingPrerequisite(str(error)) from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, seconds: float) -> bool:
    """Whether `url` answers 200 within `seconds` (another server's 404 on the port is not ours)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def serving_already(settings) -> str | None:
    """What says another `make run` of this project is serving (its Dagster UI answers on FARES_DAGSTER_PORT), or
    None."""
    url = f"http://127.0.0.1:{settings.dagster_port}/server_info"
    return f"a Dagster UI answers at {url}" if wait_for_http(url, 0.5) else None


class ServiceFailed(RuntimeError):
    """A process the supervisor started exited by itself, or never answered."""


class Supervisor:
    """Owns the processes it starts and stops them (and the cluster it started) on exit."""

    def __init__(self):
        self.settings = load_settings()
        self.processes: dict[str, subprocess.Popen] = {}
        self.started_postgres = False

    def __enter__(self):
        # A closed terminal (SIGHUP) or a kill stops everything too, as Ctrl-C does: the children lead their own
        # sessions, so nothing else would stop them.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda signum, _: sys.exit(128 + signum))
        return self

    def __exit__(self, *exc_info):
        # A second Ctrl-C or a closed terminal while stopping must not cut the stopping short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                # Each child leads its own session: signal the whole group (dagster dev has children).
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            # dagster dev's gRPC code servers can outlive it, waiting for a heartbeat timeout.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.started_postgres:
            embedded_cluster().stop()
        return False

    def spawn(self, name: str, *command: str) -> subprocess.Popen:
        """Start `command` as `name`, in its own session."""
        process = subprocess.Popen(list(command), cwd=PROJECT_ROOT, start_new_session=True)
        self.processes[name] = process
        return process

    def check_alive(self) -> None:
        """Raise ServiceFailed naming a started process that has exited (a port taken, a crash)."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise ServiceFailed(f"the {name} exited with code {process.returncode} (its output above says why; "
                                    "a port in use by another program is the usual cause)")

    def wait_until_up(self, name: str, url: str, seconds: float) -> None:
        """Wait until `url` answers 200, failing as soon as a started process exits."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check_alive()
            if wait_for_http(url, 1):
                return
        raise ServiceFailed(f"the {name} did not answer at {url} within {seconds:.0f} s")

    def start_postgres(self) -> None:
        cluster = embedded_cluster()
        self.started_postgres = not cluster.running()
        dsn = cluster.start()
        print(f"warehouse: {dsn}")
        # The page's role cannot create tables: an upgraded warehouse gains those a new version reads before it serves.
        with psycopg.connect(dsn) as conn:
            warehouse.ensure_schema(conn)

    def start_market(self) -> None:
        """The fare market simulator, unless something already answers at FARES_MARKET_URL."""
        health = f"{self.settings.market_url}/healthz"
        if wait_for_http(health, 0.5):
            return
        self.spawn("fare market simulator", sys.executable, "-m", "fare_assets.market",
                   "--port", str(self.settings.market_port))
        self.wait_until_up("fare market simulator", health, 30)

    def serve(self) -> None:
        """The Dagster UI (with its daemon: schedules and sensors) and the fare page, until Ctrl-C."""
        dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
        self.spawn("Dagster UI", dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                   "-p", str(self.settings.dagster_port))
        self.spawn("fare page", sys.executable, "-m", "webapp")
        page = self.settings.page_url
        self.wait_until_up("fare page", f"{page}/healthz", 30)
        self.wait_until_up("Dagster UI", f"http://127.0.0.1:{self.settings.dagster_port}/server_info", 120)
        print(f"\nDagster UI: http://127.0.0.1:{self.settings.dagster_port}\n"
              f"Fare page:  {page}\nCtrl-C stops everything.", flush=True)
        self.watch()

    def watch(self) -> None:
        """Until Ctrl-C; a process that exits by itself stops everything (ServiceFailed names it)."""
        try:
            while True:
                self.check_alive()
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping...")
