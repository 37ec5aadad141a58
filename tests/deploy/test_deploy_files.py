"""The deployment files pass scripts/check_deploy.py, and the checker catches what it claims to.

The negative tests break one thing in a copy of the real compose file or a scratch Dockerfile and
assert the checker names it, so a checker that silently stopped checking would fail here.
"""

import copy
import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_deploy", ROOT / "scripts" / "check_deploy.py")
check_deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_deploy)


@pytest.fixture(scope="module")
def compose():
    return check_deploy.load_compose(ROOT / "docker-compose.yml")


def _errors_after(compose, mutate):
    broken = copy.deepcopy(compose)
    mutate(broken["services"])
    return "\n".join(check_deploy.check_compose(broken))


def test_compose_schema_passes(compose):
    assert check_deploy.check_compose(compose) == []


def test_dockerfiles_and_dockerignore_pass(compose):
    assert check_deploy.check_dockerfiles(ROOT, compose) == []


def test_env_example_documents_every_variable_and_setting():
    text = (ROOT / "docker-compose.yml").read_text()
    assert check_deploy.check_env_example(ROOT, text) == []
    assert check_deploy.settings_env_names(), "core.settings.Settings should be importable in CI"


def test_dashboard_image_needs_no_ml_stack():
    assert check_deploy.check_dashboard_imports(ROOT) == []


def test_api_job_path_runs_without_the_ml_stack():
    assert check_deploy.check_api_without_ml(ROOT) == []


def test_role_extras_leave_the_ml_stack_out_of_the_api_and_dashboard():
    for image, must_keep in (("api", ("fastapi", "alembic", "scipy", "celery")), ("dashboard", ("streamlit",)),
                             ("worker", ("torch", "celery", "sqlalchemy"))):
        reqs = check_deploy.role_requirements(image, ROOT)
        if image != "worker":
            assert not any(r.startswith(("torch", "transformers", "peft")) for r in reqs), image
        for name in must_keep:
            assert any(r.startswith(name) for r in reqs), (image, name)
    for image in ("api", "dashboard"):
        assert {"torch", "transformers", "peft"} <= set(check_deploy.excluded_modules(image)), image
    assert {"sqlalchemy", "celery", "fastapi"} <= set(check_deploy.excluded_modules("dashboard"))
    dev = {check_deploy._dist(r) for r in check_deploy.role_requirements("dev", ROOT)}
    every_role = {check_deploy._dist(r) for role in check_deploy.ROLES
                  for r in check_deploy.role_requirements(role, ROOT)}
    assert every_role <= dev, "scripts/setup.sh installs .[dev]: it must hold every role"


@pytest.mark.skipif(check_deploy.compose_cli() is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_the_file():
    errors, note = check_deploy.check_compose_cli(ROOT)
    assert errors == [], errors
    assert note.startswith("ran ")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["worker"].pop("deploy"), "worker: needs a GPU reservation"),
        (lambda s: s["worker"]["deploy"]["resources"]["reservations"]["devices"][0].update(count=1),
         "reserve GPUs by device_ids, not count"),
        (lambda s: s["worker"].update(command=["basis", "worker"]), "worker: must run with concurrency 1"),
        (lambda s: s["worker"].update(volumes=["storage:/data/storage"]), "mount the models volume"),
        (lambda s: s["worker-2"]["environment"].pop("BASIS_WORKER_QUEUE"), "worker-2: environment.BASIS_WORKER_QUEUE"),
        (lambda s: s["api"]["depends_on"]["migrate"].update(condition="service_started"),
         "api: depends_on.migrate.condition must be service_completed_successfully"),
        (lambda s: s["dashboard"].update(depends_on=["api"]), "depends_on must use the long form"),
        (lambda s: s["api"].pop("healthcheck"), "api: healthcheck must call /v1/health"),
        (lambda s: s["redis"].pop("healthcheck"), "waits for redis to be healthy but redis has no healthcheck"),
        (lambda s: s["migrate"].update(command="alembic current"), "migrate: command must be `alembic upgrade head`"),
        (lambda s: s["migrate"].update(restart="always"), "migrate: is one-shot"),
        (lambda s: s["postgres"]["environment"].update(POSTGRES_PASSWORD="hunter2"), "literal secret"),
        (lambda s: s["api"]["environment"].update(BASIS_DATABASE_URL="postgresql+psycopg://u:pw@db/x"),
         "embeds a literal password"),
        (lambda s: s.pop("dashboard"), "services.dashboard is missing"),
    ],
)
def test_compose_check_catches(compose, mutate, expected):
    assert expected in _errors_after(compose, mutate)


def _scratch_context(tmp_path, dockerfile, dockerignore=""):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("")
    (tmp_path / ".dockerignore").write_text(dockerignore)
    (tmp_path / "Dockerfile").write_text(dockerfile)
    return check_deploy.check_dockerfile(tmp_path / "Dockerfile", tmp_path)


def test_dockerfile_check_passes_a_good_file(tmp_path):
    good = "FROM python:3.11-slim\nCOPY --chown=1:1 app/main.py \\\n  ./\nCOPY [\"app\", \"/app\"]\nCOPY --from=build /x /y\nUSER basis\n"
    assert _scratch_context(tmp_path, good) == []


@pytest.mark.parametrize(
    ("dockerfile", "dockerignore", "expected"),
    [
        ("FROM x\nCOPY app/missing.py \\\n  /app/\nUSER u\n", "", "Dockerfile:2: COPY source app/missing.py does not exist"),
        ("FROM x\nADD app /app\nUSER u\n", "app\n", "ADD source app is excluded by .dockerignore"),
        ("FROM x\nCOPY app /app\n", "", "must switch to a non-root USER"),
        ("FROM x\nCOPY app /app\nUSER basis\nUSER root\n", "", "must switch to a non-root USER"),
        ("FROM x\nENV HF_TOKEN=abc\nUSER u\n", "", "ENV HF_TOKEN bakes a secret"),
    ],
)
def test_dockerfile_check_catches(tmp_path, dockerfile, dockerignore, expected):
    assert any(expected in e for e in _scratch_context(tmp_path, dockerfile, dockerignore))


def test_dockerignore_matching():
    patterns = [".env", ".env.*", "!.env.example", "**/__pycache__", "data"]
    assert check_deploy.is_ignored(".env", patterns)
    assert check_deploy.is_ignored(".env.local", patterns)
    assert not check_deploy.is_ignored(".env.example", patterns)
    assert check_deploy.is_ignored("core/__pycache__/x.pyc", patterns)
    assert check_deploy.is_ignored("data/models/m", patterns)
    assert not check_deploy.is_ignored("core/data.py", patterns)


def test_env_example_check_catches_an_undocumented_variable(tmp_path):
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    errors = check_deploy.check_env_example(tmp_path, "image: x:${LAB_NEW_KNOB:-1}")
    assert errors == [".env.example: missing LAB_NEW_KNOB (used in docker-compose.yml)"]


def test_dashboard_import_scan_follows_project_modules(tmp_path):
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "core").mkdir()
    (tmp_path / "dashboard" / "app.py").write_text("import streamlit as st\nfrom core import helpers\n")
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "helpers.py").write_text("from .deep import x\n")
    (tmp_path / "core" / "deep.py").write_text("import torch\n")
    assert check_deploy.dashboard_import_closure(tmp_path) >= {"streamlit", "torch"}
    assert check_deploy.check_dashboard_imports(tmp_path) == [
        "dashboard imports torch, which docker/Dockerfile.dashboard leaves out"
    ]


def test_env_example_check_catches_an_undocumented_setting(tmp_path):
    text = (ROOT / ".env.example").read_text().replace("BASIS_WORKER_POOL=solo\n", "")
    (tmp_path / ".env.example").write_text(text)
    assert check_deploy.check_env_example(tmp_path, "") == [".env.example: missing setting BASIS_WORKER_POOL"]


def test_dockerfile_check_catches_a_missing_extra(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[project.optional-dependencies]\ndev = []\n')
    dockerfile = "FROM x\nRUN pip install '.[vllm]'\nUSER u\n"
    assert any("installs the extra [vllm]" in e for e in _scratch_context(tmp_path, dockerfile))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[project.optional-dependencies]\nvllm = []\n')
    assert check_deploy.check_dockerfile(tmp_path / "Dockerfile", tmp_path) == []


def test_dockerfile_check_catches_an_image_installing_another_role(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.optional-dependencies]\napi = []\nworker = []\n')
    (tmp_path / "app").mkdir()
    (tmp_path / "Dockerfile.api").write_text("FROM x\nRUN pip install --no-deps '.[worker]'\nUSER u\n")
    errors = "\n".join(check_deploy.check_dockerfile(tmp_path / "Dockerfile.api", tmp_path))
    assert "must install its role's dependencies (pip install .[api])" in errors
    assert "installs the extra [worker], which belongs to another role's image" in errors
