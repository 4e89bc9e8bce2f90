"""The embedded PostgreSQL cluster the project starts itself (FARES_ENV=local).

initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` OS user on a
folder that user can reach; as any other user they run directly. Authentication is `trust` on
127.0.0.1 only: it is a single-machine development cluster (see README, "Security").
"""
import argparse
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from fare_assets.settings import env_or_default, load_settings

SUPERUSER = "fares"
WAREHOUSE_DB = "fares"
DAGSTER_DB = "dagster"
READONLY_ROLE = "fares_web"
# Debian's layout, newest major version first, then a source build's default prefix.
BIN_CANDIDATES = [*sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                          key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0,
                          reverse=True),
                  Path("/usr/local/pgsql/bin")]
INSTALL_HINT = "install the PostgreSQL server binaries: `apt-get install -y postgresql` (Debian/Ubuntu)"
# Where a root-run cluster goes when the postgres user cannot reach the project folder: under /var/lib, which only
# root may write, as root chowns, initdb's and deletes what is in it (in a world-writable folder such as /var/tmp,
# another user could create it first and swap a cluster folder for a link to /etc).
ROOT_FALLBACK = Path("/var/lib/fares-pg")


class PostgresError(RuntimeError):
    """The embedded cluster could not be set up or started."""


def find_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl (FARES_PG_BIN, PATH or Debian's layout)."""
    explicit = env_or_default("FARES_PG_BIN", "")
    candidates = [Path(explicit)] if explicit else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates + BIN_CANDIDATES:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise PostgresError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


def _as_root() -> bool:
    return os.geteuid() == 0


def _reachable_by_postgres(folder: Path) -> bool:
    """Whether the postgres user can traverse every folder down to `folder`."""
    return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(folder)],
                          capture_output=True).returncode == 0


def _root_only_folder(folder: Path) -> None:
    """Create `folder` for root-run clusters, refusing one someone else could change (a link, not root's, writable
    by others)."""
    folder.mkdir(parents=True, exist_ok=True)
    found = folder.lstat()
    if stat.S_ISLNK(found.st_mode) or found.st_uid != 0 or found.st_mode & 0o022:
        raise PostgresError(f"{folder} must be a folder only root can write, to hold root-run clusters; remove it "
                            "or make it root's with mode 755")
    # Whatever the umask, the postgres user must pass through it to its cluster.
    folder.chmod(0o755)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir` listening on 127.0.0.1:`port`."""

    data_dir: Path
    port: int

    def __post_init__(self):
        self.data_dir = Path(self.data_dir).absolute()
        self.bin_dir = find_bin_dir()

    def dsn(self, dbname: str = WAREHOUSE_DB, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if _as_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True)

    def _cluster_dir(self) -> Path:
        """The real data folder: `data_dir`, or a root-only fallback it links to."""
        if not _as_root():
            return self.data_dir.resolve()
        if self.data_dir.is_symlink():
            return self._root_fallback_target()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if _reachable_by_postgres(self.data_dir.parent):
            return self.data_dir
        tag = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:12]
        fallback = ROOT_FALLBACK / tag
        _root_only_folder(ROOT_FALLBACK)
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.symlink_to(fallback, target_is_directory=True)
        return fallback

    def _root_fallback_target(self) -> Path:
        """Where `data_dir` links to, refused unless it is a cluster folder in ROOT_FALLBACK: root would chown, start
        and delete whatever another user made it point at (links into /var/tmp/fares-pg before 2026-12-07)."""
        target = self.data_dir.resolve()
        _root_only_folder(ROOT_FALLBACK)
        if target.parent != ROOT_FALLBACK:
            raise PostgresError(f"{self.data_dir} links to {target}, outside {ROOT_FALLBACK} where root-run clusters "
                                f"live: remove the link (`make clean` does, leaving {target}) and the cluster is made "
                                "again there")
        return target

    def _initdb(self, cluster: Path) -> None:
        cluster.mkdir(parents=True, exist_ok=True)
        if _as_root():
            user = pwd.getpwnam("postgres")
            os.chown(cluster, user.pw_uid, user.pw_gid, follow_symlinks=False)
        cluster.chmod(0o700)
        done = self._run("initdb", "-D", str(cluster), "-U", SUPERUSER, "--auth=trust",
                         "--encoding=UTF8", "--locale=C", "--no-instructions")
        if done.returncode != 0:
            raise PostgresError(f"initdb failed in {cluster}:\n{done.stderr.strip()}")
        with open(cluster / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# fare platform: loopback only, socket inside the cluster folder\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{cluster}'\n"
                "max_connections = 200\n"
                # A lost last transaction on a crash is acceptable for a rebuildable local warehouse.
                "synchronous_commit = off\n"
                # One log file per weekday, overwritten when a running server reaches that day again, so a cluster
                # served for months keeps about a week of its log (a start appends to its weekday's file). server.log
                # holds only what is said before the collector starts, such as a port in use.
                "logging_collector = on\n"
                "log_filename = 'postgresql-%a.log'\n"
                "log_rotation_age = '1d'\n"
                "log_rotation_size = 0\n"
                "log_truncate_on_rotation = on\n"
            )

    def running(self) -> bool:
        cluster = self.data_dir.resolve()
        return cluster.exists() and self._run("pg_ctl", "status", "-D", str(cluster)).returncode == 0

    def start(self) -> str:
        """Create the cluster if needed, start it if stopped, ensure the databases; return the DSN."""
        cluster = self._cluster_dir()
        if not (cluster / "PG_VERSION").exists():
            self._initdb(cluster)
        if not self.running():
            log = cluster / "server.log"
            done = self._run("pg_ctl", "start", "-D", str(cluster), "-l", str(log), "-w", "-t", "60",
                             "-o", f"-p {self.port}")
            if done.returncode != 0:
                # What the server said before its log collector started (a port in use), then in its newest log file
                # (a failed recovery).
                logs = [log, *sorted((cluster / "log").glob("*.log"), key=lambda path: path.stat().st_mtime)[-1:]]
                tail = "".join(path.read_text()[-2000:] for path in logs if path.exists()) or done.stderr
                raise PostgresError(f"PostgreSQL did not start on port {self.port}:\n{tail}")
        self._ensure_databases()
        return self.dsn()

    def stop(self) -> None:
        if self.running():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir.resolve()), "-m", "fast", "-w")

    def destroy(self) -> None:
        """Stop the cluster and delete its files, wherever they are (`make clean`, tests)."""
        self.stop()
        cluster = self.data_dir.resolve()
        if self.data_dir.is_symlink():
            self.data_dir.unlink()
            if _as_root() and cluster.parent != ROOT_FALLBACK:
                # Not root's to delete (see _root_fallback_target): only the link goes.
                return
        shutil.rmtree(cluster, ignore_errors=True)

    def _ensure_databases(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=5)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with conn:
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in (WAREHOUSE_DB, DAGSTER_DB):
                if name not in existing:
                    conn.execute(f'CREATE DATABASE "{name}"')
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READONLY_ROLE,)).fetchone():
                conn.execute(f'CREATE ROLE "{READONLY_ROLE}" LOGIN')


def embedded_cluster() -> EmbeddedPostgres:
    """The project's cluster, per FARES_HOME and FARES_PG_PORT."""
    settings = load_settings()
    return EmbeddedPostgres(settings.pg_dir, settings.pg_port)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Manage the embedded PostgreSQL cluster.")
    parser.add_argument("action", choices=["start", "stop", "status", "dsn", "destroy"])
    args = parser.parse_args(argv)
    try:
        cluster = embedded_cluster()
        if args.action == "start":
            print(cluster.start())
        elif args.action == "stop":
            cluster.stop()
        elif args.action == "destroy":
            cluster.destroy()
        elif args.action == "status":
            print("running" if cluster.running() else "stopped")
        else:
            print(cluster.dsn())
    except PostgresError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
