"""Fixtures for the pipeline tests: an isolated working folder with a pre-migrated MLflow SQLite
store (migrations cost seconds per new database), a shared data cache, and a tiny 4x4 spec."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

# One intra-op thread: on a 2-core machine shared by other jobs, torch's parallel kernels stall
# far more than they gain on test-sized tensors, and results stay bit-reproducible.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite database to copy into each test folder."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("difflab-cache")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path, data_cache: Path) -> Path:
    """cwd = a fresh folder holding mlflow.db; no tracking URI from the environment."""
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("DIFFLAB_CACHE", str(data_cache))
    return tmp_path


_SHARED_RAY = {"held": False}


@pytest.fixture(autouse=True)
def _no_leaked_ray():
    """A Ray instance a test's in-process ``difflab`` started is shut down after it, so the next
    test's ``ray.init`` (or ``--address``) is not silently skipped; ``ray_cluster``'s stays."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized() and not _SHARED_RAY["held"]:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cluster():
    """A small local Ray instance for tests that need real workers."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
    ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=True, logging_level="WARNING")
    _SHARED_RAY["held"] = True
    yield ray
    _SHARED_RAY["held"] = False
    ray.shutdown()
