"""A run tracked by a real `mlflow server` (started with infra/mlflow-server.sh on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.cli import main
from specs import tiny_spec, write_spec

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path):
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "ROOT": str(tmp_path / "server"),
        "PORT": str(port),
        "WORKERS": "1",
    }
    proc = subprocess.Popen(
        [str(REPO / "infra" / "mlflow-server.sh")], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "mlflow server did not become healthy in 120 s"
        time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_run_logged_through_a_real_server(workdir: Path, mlflow_server: str, capsys: pytest.CaptureFixture) -> None:
    path = write_spec(workdir, tiny_spec(tracking={"experiment": "served", "uri": mlflow_server}))
    assert main(["run", str(path)]) == 0
    assert not (workdir / "mlartifacts").exists()  # artifacts went to the server, not a local folder
    client = MlflowClient(mlflow_server)
    [run] = client.search_runs([client.get_experiment_by_name("served").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert Path(client.download_artifacts(run.info.run_id, "spec.yaml")).read_text().startswith("name: tiny")
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == [2, 4, 6, 8, 10, 12]

    capsys.readouterr()
    assert main(["leaderboard", "served", "--uri", mlflow_server, "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["run_id"] == run.info.run_id and row["status"] == "FINISHED" and row["eval/elbo"] > 0
