"""Settings: embedded defaults follow BASIS_DATA_DIR; comma lists; limits validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_embedded_defaults_live_in_the_data_dir(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "BROKER_URL", "STORAGE_DIR", "MODEL_ROOTS"):
        monkeypatch.delenv(f"BASIS_{name}", raising=False)
    monkeypatch.setenv("BASIS_DATA_DIR", str(tmp_path / "d"))
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'd' / 'basis.sqlite'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'd' / 'broker.sqlite'}"
    assert settings.storage_dir == tmp_path / "d" / "storage"
    assert settings.model_roots == [tmp_path / "d" / "models"]
    assert settings.job_run_dir("job_1") == tmp_path / "d" / "storage" / "jobs" / "job_1"
    assert (settings.api_port, settings.dashboard_port, settings.worker_queue) == (8000, 8501, "gpu")


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("BASIS_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("BASIS_MODEL_ROOTS", f"{tmp_path / 'a'}, {tmp_path / 'b'},")
    monkeypatch.setenv("BASIS_MAX_UPLOAD_BYTES", "1000")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.model_roots == [tmp_path / "a", tmp_path / "b"]
    assert settings.max_upload_bytes == 1000


def test_bad_values_name_the_field(monkeypatch):
    monkeypatch.setenv("BASIS_MAX_UPLOAD_BYTES", "-1")
    with pytest.raises(ValidationError, match="max_upload_bytes"):
        Settings()
