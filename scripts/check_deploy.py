"""Static checks of the deployment files: compose stack, Dockerfiles, .env.example.

Run by CI (through tests/deploy/test_deploy_files.py) and by hand: `python scripts/check_deploy.py`.
No Docker engine is needed. Two layers:

1. Schema rules that always run (PyYAML): the services the lab stack needs, their start order
   (`depends_on` conditions), healthchecks, the GPU reservation and concurrency of every worker,
   the shared volumes, no literal secrets; every file a Dockerfile COPYs exists and is not hidden
   by .dockerignore; images run as a non-root user and install only their role's pyproject extra;
   .env.example names every variable the compose file uses and every BASIS_* setting; the packages
   the api and dashboard images leave out (every other role's extra) are never imported by them.
2. `docker-compose config -q` (Debian's docker-compose package, see scripts/install_ci_tools.sh)
   or `docker compose config -q` when one is installed: the real parser, interpolation included.
   Skipped, and said so, when neither exists.

Each check returns a list of error strings (empty = fine) so tests can assert on the message.
"""

from __future__ import annotations

import ast
import glob
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = "docker-compose.yml"
REQUIRED_SERVICES = ("postgres", "redis", "migrate", "api", "worker", "dashboard")
WORKER_DOCKERFILE = "docker/Dockerfile.worker"
STORAGE_TARGET = "/data/storage"
MODELS_TARGET = "/models"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "API_KEY")
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
PROJECT_PACKAGES = ("trainer", "core", "api", "worker", "client", "cli", "dashboard", "migrations")
# The roles an image installs (`pip install .[role]`); the other extras are tools and engines.
ROLES = ("api", "worker", "dashboard")
# The extra each Dockerfile must install.
IMAGE_ROLES = {"Dockerfile.api": "api", "Dockerfile.dashboard": "dashboard", "Dockerfile.worker": "worker"}


# ---------------------------------------------------------------- compose schema


def load_compose(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def _command_str(cmd: Any) -> str:
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd or "")


def _healthcheck_str(svc: dict) -> str:
    test = (svc.get("healthcheck") or {}).get("test")
    return _command_str(test)


def _env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _mount_targets(svc: dict) -> dict[str, str]:
    """Container path -> source (named volume, ${...} expression or host path)."""
    out = {}
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):
            out[vol["target"]] = str(vol.get("source", ""))
            continue
        # Split "source:target[:mode]" without breaking "${VAR:-default}" sources.
        parts = re.split(r":(?![^{]*\})", vol)
        if len(parts) >= 2:
            out[parts[1]] = parts[0]
    return out


def _dockerfile_of(svc: dict) -> str | None:
    build = svc.get("build")
    if isinstance(build, dict):
        return os.path.normpath(os.path.join(build.get("context", "."), build.get("dockerfile", "Dockerfile")))
    if isinstance(build, str):
        return os.path.normpath(os.path.join(build, "Dockerfile"))
    return None


def _depends(svc: dict, errors: list[str], name: str) -> dict[str, str]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        errors.append(f"{name}: depends_on must use the long form with a condition "
                      f"(the list form only waits for containers to start)")
        return {d: "service_started" for d in dep}
    return {k: (v or {}).get("condition", "service_started") for k, v in dep.items()}


def _require_dep(deps: dict[str, str], name: str, target: str, condition: str, errors: list[str]) -> None:
    if deps.get(target) != condition:
        errors.append(f"{name}: depends_on.{target}.condition must be {condition} (got {deps.get(target)})")


def check_compose(compose: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    services: dict[str, dict] = compose.get("services") or {}
    for name in REQUIRED_SERVICES:
        if name not in services:
            errors.append(f"services.{name} is missing")
    if errors:
        return errors
    declared_volumes = set((compose.get("volumes") or {}).keys())

    for name, svc in services.items():
        deps = _depends(svc, errors, name)
        for target, cond in deps.items():
            if target not in services:
                errors.append(f"{name}: depends_on names unknown service {target}")
            if cond not in ("service_started", "service_healthy", "service_completed_successfully"):
                errors.append(f"{name}: depends_on.{target} has unknown condition {cond}")
            elif cond == "service_healthy" and not services.get(target, {}).get("healthcheck"):
                errors.append(f"{name}: waits for {target} to be healthy but {target} has no healthcheck")
        for key, value in _env(svc).items():
            if any(w in key for w in SECRET_WORDS) and value and "${" not in value:
                errors.append(f"{name}: environment.{key} is a literal secret; take it from .env")
        for url_key in ("BASIS_DATABASE_URL", "BASIS_BROKER_URL"):
            value = _env(svc).get(url_key, "")
            if ":" in value.split("@")[0].split("//")[-1] and "${" not in value.split("@")[0]:
                errors.append(f"{name}: environment.{url_key} embeds a literal password")
        for target, source in _mount_targets(svc).items():
            named = re.sub(r"\$\{[A-Za-z0-9_]+:-([^}]*)\}", r"\1", source)
            if named and not named.startswith(("/", ".", "~")) and named not in declared_volumes:
                errors.append(f"{name}: volume {named} (mounted at {target}) is not declared under volumes")

    pg, redis, migrate, api, dash = (services[n] for n in ("postgres", "redis", "migrate", "api", "dashboard"))
    if "pg_isready" not in _healthcheck_str(pg):
        errors.append("postgres: healthcheck must run pg_isready")
    pg_data = _mount_targets(pg).get("/var/lib/postgresql/data", "")
    if not pg_data or pg_data.startswith(("/", ".")):
        errors.append("postgres: /var/lib/postgresql/data must be a named volume")
    hc = _healthcheck_str(redis)
    if "redis-cli" not in hc or "ping" not in hc:
        errors.append("redis: healthcheck must run redis-cli ping")

    if _command_str(migrate.get("command")).strip() != "alembic upgrade head":
        errors.append("migrate: command must be `alembic upgrade head`")
    if str(migrate.get("restart", "no")) != "no":
        errors.append("migrate: is one-shot; restart must be \"no\"")
    _require_dep(_depends(migrate, [], "migrate"), "migrate", "postgres", "service_healthy", errors)

    if "/v1/health" not in _healthcheck_str(api):
        errors.append("api: healthcheck must call /v1/health")
    api_deps = _depends(api, [], "api")
    _require_dep(api_deps, "api", "migrate", "service_completed_successfully", errors)
    _require_dep(api_deps, "api", "redis", "service_healthy", errors)
    if STORAGE_TARGET not in _mount_targets(api):
        errors.append(f"api: must mount the storage volume at {STORAGE_TARGET} (uploads, checkpoint downloads)")

    if not dash.get("healthcheck"):
        errors.append("dashboard: healthcheck is missing")
    _require_dep(_depends(dash, [], "dashboard"), "dashboard", "api", "service_healthy", errors)

    workers = [n for n, s in services.items() if _dockerfile_of(s) == os.path.normpath(WORKER_DOCKERFILE)]
    if "worker" not in workers:
        errors.append(f"worker: must be built from {WORKER_DOCKERFILE}")
    for name in workers:
        errors += check_worker(name, services[name])
    for name in ("migrate", "api", "dashboard", *workers):
        if services[name].get("env_file") not in (".env", [".env"]):
            errors.append(f"{name}: env_file must be .env")
    for name in ("migrate", "api", *workers):
        env = _env(services[name])
        if not env.get("BASIS_DATABASE_URL", "").startswith("postgresql+psycopg://"):
            errors.append(f"{name}: BASIS_DATABASE_URL must be a postgresql+psycopg:// URL")
        if not env.get("BASIS_BROKER_URL", "").startswith("redis://"):
            errors.append(f"{name}: BASIS_BROKER_URL must be a redis:// URL")
    return errors


def check_worker(name: str, svc: dict) -> list[str]:
    errors = []
    devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices")
    if not devices:
        errors.append(f"{name}: needs a GPU reservation under deploy.resources.reservations.devices")
    for dev in devices or []:
        if dev.get("driver") != "nvidia" or "gpu" not in (dev.get("capabilities") or []):
            errors.append(f"{name}: GPU reservation needs driver nvidia and capabilities [gpu]")
        if "count" in dev or not dev.get("device_ids"):
            errors.append(f"{name}: reserve GPUs by device_ids, not count "
                          f"(count: N always maps to GPUs 0..N-1, so workers would share them)")
    cmd = _command_str(svc.get("command"))
    if not re.search(r"(--concurrency[ =]1|-c 1)\b", cmd):
        errors.append(f"{name}: must run with concurrency 1 (one job per GPU set); command is `{cmd}`")
    if "BASIS_WORKER_QUEUE" not in _env(svc):
        errors.append(f"{name}: environment.BASIS_WORKER_QUEUE must name its GPU pool's queue")
    mounts = _mount_targets(svc)
    for target, what in ((MODELS_TARGET, "models"), (STORAGE_TARGET, "storage (runs, checkpoints)")):
        if target not in mounts:
            errors.append(f"{name}: must mount the {what} volume at {target}")
    _require_dep(_depends(svc, [], name), name, "migrate", "service_completed_successfully", errors)
    return errors


# ---------------------------------------------------------------- Dockerfiles


def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf, start = [], "", 0
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if not buf:
            start = lineno
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def copy_sources(args: str) -> list[str] | None:
    """Source paths of one COPY/ADD, or None when it copies from another build stage."""
    if args.startswith("["):
        parts = json.loads(args)
    else:
        parts = args.split()
    flags = [p for p in parts if p.startswith("--")]
    if any(f.startswith("--from=") for f in flags):
        return None
    paths = [p for p in parts if not p.startswith("--")]
    return paths[:-1]


def dockerignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` spans directories, `*` and `?` do not."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + "$")


def is_ignored(rel_path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, and excluding a directory excludes its files."""
    parts = Path(rel_path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(os.path.normpath(pattern.removeprefix("!")).strip("/"))
        if any(regex.match(c) for c in candidates):
            ignored = not negate
    return ignored


def check_dockerfile(dockerfile: Path, context: Path) -> list[str]:
    errors = []
    rel = os.path.relpath(dockerfile, ROOT) if dockerfile.is_relative_to(ROOT) else str(dockerfile)
    if not dockerfile.exists():
        return [f"{rel}: does not exist"]
    patterns = dockerignore_patterns(context)
    users = []
    for lineno, instr, args in dockerfile_instructions(dockerfile.read_text()):
        if instr in ("COPY", "ADD"):
            for src in copy_sources(args) or []:
                if re.match(r"^[a-z]+://", src):
                    continue
                matches = glob.glob(str(context / src))
                if not matches:
                    errors.append(f"{rel}:{lineno}: {instr} source {src} does not exist in the build context")
                elif all(is_ignored(os.path.relpath(m, context), patterns) for m in matches):
                    errors.append(f"{rel}:{lineno}: {instr} source {src} is excluded by .dockerignore")
        elif instr == "USER":
            users.append(args.split(":")[0])
        elif instr in ("ENV", "ARG"):
            for key in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", args) or [args.split()[0]]:
                if any(w in key.upper() for w in SECRET_WORDS):
                    errors.append(f"{rel}:{lineno}: {instr} {key} bakes a secret into the image")
    if not users or users[-1] in ("root", "0"):
        errors.append(f"{rel}: must switch to a non-root USER")
    errors += _check_extras(rel, dockerfile.read_text(), context / "pyproject.toml")
    return errors


def installed_extras(text: str) -> list[str]:
    """The pyproject extras a Dockerfile's `pip install .[a,b]` lines install."""
    found = re.findall(r"pip install\b[^\n]*?\s['\"]?\.\[([A-Za-z0-9_.,-]+)\]", text)
    return [extra for group in found for extra in group.split(",")]


def _check_extras(rel: str, text: str, pyproject: Path) -> list[str]:
    """Every pyproject extra a Dockerfile installs exists, and a role's image installs its role."""
    wanted = installed_extras(text)
    extras = tomllib.loads(pyproject.read_text())["project"].get("optional-dependencies", {}) if wanted else {}
    errors = [f"{rel}: installs the extra [{x}], which pyproject.toml does not define"
              for x in wanted if x not in extras]
    role = IMAGE_ROLES.get(Path(rel).name)
    if role and role not in wanted:
        errors.append(f"{rel}: must install its role's dependencies (pip install .[{role}])")
    errors += [f"{rel}: installs the extra [{x}], which belongs to another role's image"
               for x in wanted if role and x in ROLES and x != role]
    return errors


def check_dockerfiles(root: Path, compose: dict[str, Any]) -> list[str]:
    errors, seen = [], set()
    for svc in (compose.get("services") or {}).values():
        build = svc.get("build")
        if not build:
            continue
        context = root / (build.get("context", ".") if isinstance(build, dict) else build)
        dockerfile = root / _dockerfile_of(svc)
        if dockerfile in seen:
            continue
        seen.add(dockerfile)
        errors += check_dockerfile(dockerfile, context)
    for path in sorted((root / "docker").glob("Dockerfile*")):
        if path not in seen:
            errors.append(f"{path.relative_to(root)}: not used by any service in {COMPOSE_FILE}")
    patterns = dockerignore_patterns(root)
    if not is_ignored(".env", patterns):
        errors.append(".dockerignore must exclude .env (it holds the passwords)")
    return errors


# ---------------------------------------------------------------- .env.example


def env_example_names(root: Path) -> set[str]:
    """Variables .env.example sets or documents (a commented `# NAME=` line counts)."""
    names = set()
    for line in (root / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line.strip())
        if m:
            names.add(m.group(1))
    return names


# Every pydantic-settings class whose variables .env.example must document.
SETTINGS_CLASSES = (("core.settings", "Settings"), ("worker.config", "WorkerSettings"))


def settings_env_names() -> list[str] | None:
    """Env names of every SETTINGS_CLASSES field, or None while none can be imported."""
    names, found = [], False
    sys.path.insert(0, str(ROOT))
    try:
        for module_name, class_name in SETTINGS_CLASSES:
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except Exception:  # built by another package; the check tightens once it lands
                continue
            found = True
            prefix = cls.model_config.get("env_prefix", "")
            for field_name, field in cls.model_fields.items():
                alias = field.validation_alias if isinstance(field.validation_alias, str) else None
                names.append((alias or f"{prefix}{field_name}").upper())
    finally:
        sys.path.remove(str(ROOT))
    return names if found else None


def check_env_example(root: Path, compose_text: str) -> list[str]:
    errors = []
    if not (root / ".env.example").exists():
        return [".env.example is missing"]
    documented = env_example_names(root)
    for var in sorted(set(VAR_RE.findall(compose_text))):
        if var not in documented:
            errors.append(f".env.example: missing {var} (used in {COMPOSE_FILE})")
    for var in settings_env_names() or []:
        if var not in documented:
            errors.append(f".env.example: missing setting {var}")
    for line in (root / ".env.example").read_text().splitlines():
        if re.match(r"^[A-Z][A-Z0-9_]*=.*\$\{", line):
            errors.append(f".env.example: {line.split('=')[0]} uses ${{...}}, which env_file does not expand in compose v1")
    return errors


# ---------------------------------------------------------------- dashboard imports


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def dashboard_import_closure(root: Path) -> set[str]:
    """Every module the dashboard's files import, following project modules transitively."""
    todo = [f"dashboard.{p.stem}" if p.stem != "__init__" else "dashboard"
            for p in (root / "dashboard").glob("*.py")]
    seen, external = set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in seen]
        path = _module_file(root, module)
        if path is None:
            continue
        for imported in _imports(path, module):
            if imported.split(".")[0] in PROJECT_PACKAGES:
                todo.append(imported)
            elif imported:
                external.add(imported.split(".")[0])
    return external


def _dist(requirement: str) -> str:
    """The normalised distribution name of a requirement string (`psycopg[binary]>=3` -> psycopg)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]).lower()


def role_requirements(role: str, root: Path = ROOT) -> list[str]:
    """What `pip install .[role]` installs from pyproject: the base dependencies plus the extra,
    following the extras it names of the project itself (`basis-platform[server]`)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras, own = project.get("optional-dependencies", {}), _dist(project["name"])
    requirements, todo, seen = list(project.get("dependencies", [])), [role], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in extras[extra]:
            if _dist(requirement) == own:
                todo += re.search(r"\[(.*?)\]", requirement).group(1).split(",")
            else:
                requirements.append(requirement)
    return requirements


def installed_closure(requirements: list[str]) -> set[str]:
    """Normalised names of every distribution `pip install` of `requirements` brings in: the
    installed distributions' own requirements followed (with the extras asked for, as pip does)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    todo, seen = [Requirement(r) for r in requirements], set()
    while todo:
        requirement = todo.pop()
        key = (_dist(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = requires(key[0]) or []
        except PackageNotFoundError:
            continue
        for text in needs:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra})
                                         for extra in ("", *requirement.extras)):
                todo.append(sub)
    return {name for name, _ in seen}


def excluded_modules(image: str, root: Path = ROOT) -> list[str]:
    """Top-level modules of the distributions the other roles install and `image` ("api" or
    "dashboard") does not, even as a dependency of its own (names read from the installed
    distributions' metadata): the `api` image gets pandas because `datasets` needs it."""
    from importlib.metadata import packages_distributions

    every = {_dist(r) for role in ROLES for r in role_requirements(role, root)}
    excluded = every - installed_closure(role_requirements(image, root))
    modules: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            modules.setdefault(_dist(dist), set()).add(module)
    return sorted(module for dist in excluded for module in modules.get(dist, {dist.replace("-", "_")})
                  if module.isidentifier() and not module.startswith("_"))


def check_dashboard_imports(root: Path) -> list[str]:
    bad = sorted(dashboard_import_closure(root) & set(excluded_modules("dashboard")))
    return [f"dashboard imports {m}, which docker/Dockerfile.dashboard leaves out" for m in bad]


def check_api_without_ml(root: Path = ROOT) -> list[str]:
    """The API's job path with the modules the API image leaves out made unimportable."""
    blocked = ",".join(excluded_modules("api") + ["vllm"])
    proc = subprocess.run([sys.executable, str(root / "tests" / "deploy" / "lean_api_flow.py"), blocked],
                          cwd=root, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        return ["the API needs a module docker/Dockerfile.api leaves out:\n" + "\n".join(tail)]
    return []


# ---------------------------------------------------------------- docker-compose config


def compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def check_compose_cli(root: Path) -> tuple[list[str], str]:
    """`config -q` in a scratch copy whose .env is .env.example (a real .env is never read)."""
    cli = compose_cli()
    if cli is None:
        return [], "skipped: neither docker-compose nor `docker compose` is installed"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(root / COMPOSE_FILE, tmp)
        shutil.copy(root / ".env.example", Path(tmp) / ".env")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BASIS_", "LAB_", "POSTGRES_", "REDIS_", "COMPOSE_"))}
        errors = []
        for extra in ([], ["--profile", "worker-2"]):
            proc = subprocess.run([*cli, *extra, "config", "-q"], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                errors.append(f"{' '.join(cli + extra)} config -q failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return errors, f"ran {' '.join(cli)} config -q"


# ---------------------------------------------------------------- entry point


def check_all(root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(errors, notes) of every check."""
    compose_path = root / COMPOSE_FILE
    compose = load_compose(compose_path)
    errors = check_compose(compose)
    errors += check_dockerfiles(root, compose)
    errors += check_env_example(root, compose_path.read_text())
    errors += check_dashboard_imports(root)
    errors += check_api_without_ml(root)
    cli_errors, note = check_compose_cli(root)
    notes = [note]
    if settings_env_names() is None:
        notes.append("skipped settings coverage: no settings class is importable")
    return errors + cli_errors, notes


def main() -> int:
    errors, notes = check_all()
    for note in notes:
        print(f"note: {note}")
    for error in errors:
        print(f"error: {error}")
    print("deploy files OK" if not errors else f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
