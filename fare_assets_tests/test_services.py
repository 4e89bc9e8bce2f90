"""The supervisor of `make run`: a process that dies is named, a foreign server is not taken for ours."""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fare_assets import pipeline
from fare_assets.services import ServiceFailed, Supervisor, free_port, wait_for_http
from fare_assets_tests.test_collector import serving


class NotFound(BaseHTTPRequestHandler):
    status = 404

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args) -> None:
        pass


def test_a_started_process_that_exits_stops_the_wait_and_is_named():
    supervisor = Supervisor()
    supervisor.spawn("fare page", sys.executable, "-c", "import sys; sys.exit(3)")
    supervisor.processes["fare page"].wait(timeout=30)
    # Nothing listens on the port: without the check the wait would last its 30 seconds.
    with pytest.raises(ServiceFailed, match=r"the fare page exited with code 3 .*a port in use"):
        supervisor.wait_until_up("fare page", f"http://127.0.0.1:{free_port()}/healthz", 30)
    with pytest.raises(ServiceFailed, match="the fare page exited with code 3"):
        supervisor.watch()


def test_another_server_on_the_port_is_not_taken_for_the_service():
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), NotFound)) as server:
        assert not wait_for_http(f"http://127.0.0.1:{server.server_address[1]}/healthz", 0.5)


def test_make_run_refuses_the_aws_set_before_starting_anything(monkeypatch, capsys):
    monkeypatch.setenv("FARES_ENV", "aws")
    assert pipeline.main([]) == 2
    assert "not FARES_ENV=aws" in capsys.readouterr().err


class DagsterUI(NotFound):
    status = 200


def test_make_run_refuses_to_start_beside_a_served_make_run(monkeypatch, capsys):
    # Its runs in process would skip the served instance's pools and rewrite the lake's partitions under its daemon.
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), DagsterUI)) as server:
        monkeypatch.setenv("FARES_DAGSTER_PORT", str(server.server_address[1]))
        assert pipeline.main([]) == 2
    error = capsys.readouterr().err
    assert f"a Dagster UI answers at http://127.0.0.1:{server.server_address[1]}/server_info" in error
    assert "another `make run` is serving this project" in error


def test_the_embedded_cluster_keeps_a_week_of_its_log_in_weekday_files(postgres):
    import re

    import psycopg

    with psycopg.connect(postgres.dsn("postgres")) as conn:
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                     "('logging_collector', 'log_filename', 'log_truncate_on_rotation')").fetchall())
    assert settings == {"logging_collector": "on", "log_filename": "postgresql-%a.log", "log_truncate_on_rotation": "on"}
    logs = [path.name for path in (postgres.data_dir.resolve() / "log").iterdir()]
    assert logs and all(re.fullmatch(r"postgresql-(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\.log", name) for name in logs)


def test_a_cluster_that_cannot_start_says_why(postgres, tmp_path):
    from fare_assets.storing.postgres import EmbeddedPostgres, PostgresError

    # The session's cluster holds the port: the server says so before its log collector starts.
    taken = EmbeddedPostgres(tmp_path / "cluster", postgres.port)
    try:
        with pytest.raises(PostgresError, match=f"did not start on port {postgres.port}") as raised:
            taken.start()
        assert "could not" in str(raised.value) and "Address already in use" in str(raised.value)
    finally:
        taken.destroy()


def test_root_run_clusters_live_only_in_a_folder_no_one_else_can_change(tmp_path):
    import os

    from fare_assets.storing.postgres import PostgresError, _root_only_folder

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(PostgresError, match="must be a folder only root can write"):
        _root_only_folder(shared)
    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path / "own", target_is_directory=True)
    (tmp_path / "own").mkdir()
    with pytest.raises(PostgresError, match="must be a folder only root can write"):
        _root_only_folder(linked)
    fresh = tmp_path / "fresh" / "fares-pg"
    if os.geteuid() == 0:
        _root_only_folder(fresh)
        assert fresh.stat().st_mode & 0o777 == 0o755
    else:
        with pytest.raises(PostgresError):
            _root_only_folder(fresh)


def test_a_root_run_cluster_linked_outside_its_folder_is_neither_started_nor_deleted(tmp_path):
    import os

    from fare_assets.storing.postgres import EmbeddedPostgres, PostgresError

    # A link made before 2026-12-07 into /var/tmp/fares-pg, where another user could have made it point elsewhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("not root's to delete")
    linked = tmp_path / "project" / "pg"
    linked.parent.mkdir()
    linked.symlink_to(elsewhere, target_is_directory=True)
    cluster = EmbeddedPostgres(linked, 5)
    if os.geteuid() == 0:
        with pytest.raises(PostgresError, match="outside /var/lib/fares-pg where root-run clusters live"):
            cluster.start()
        cluster.destroy()
        assert not linked.exists() and (elsewhere / "keep").exists()
    else:
        # A user's own link is the user's choice.
        assert cluster._cluster_dir() == elsewhere


@pytest.mark.parametrize("host, bind", [(None, "127.0.0.1:5071"), ("  ", "127.0.0.1:5071"), ("::", "[::]:5071"),
                                        ("0.0.0.0", "0.0.0.0:5071")])
def test_the_page_binds_the_configured_host_and_an_empty_one_means_the_loopback(monkeypatch, host, bind):
    from webapp.__main__ import server_settings

    monkeypatch.setenv("FARES_WEB_PORT", "5071")
    if host is None:
        monkeypatch.delenv("FARES_WEB_HOST", raising=False)
    else:
        monkeypatch.setenv("FARES_WEB_HOST", host)
    assert server_settings()["bind"] == bind


def test_the_java_spark_starts_is_the_one_java_home_names(monkeypatch, tmp_path):
    from fare_assets.services import java_major_version

    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert java_major_version() == 11
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "missing"))
    assert java_major_version() is None
