"""The README's curl walkthrough, run verbatim against the embedded stack (`basis up`, as `make run`
starts it), so the README cannot drift from the API again. The block between the
`<!-- walkthrough:start -->` / `<!-- walkthrough:end -->` comments is extracted and run with
`bash -euo pipefail`; only `BASIS` and `KEY` come from the test. The model is served under the
demo model's name; a random tiny model stands in for the warm-started one (building that takes a
minute, and the walkthrough checks the API's answers, not learning)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from core.db import make_engine, session_scope
from core.services.keys import create_key
from tests.e2e.conftest import REPO, install_model, service_env, spawn, stop, wait_until
from tests.net import api_healthy, free_port

pytestmark = pytest.mark.slow
DEMO_MODEL_NAME = "tiny-arith"  # cli.demo.DEMO_MODEL_NAME, what `make run` serves


def walkthrough() -> str:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```\s*<!-- walkthrough:end -->",
                      readme, re.S)
    assert block, "README.md lost its marked walkthrough block"
    return block.group(1)


def test_readme_names_the_demo_model():
    from cli.demo import DEMO_MODEL_NAME as served

    assert served == DEMO_MODEL_NAME and f'"model": "{served}"' in walkthrough()


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_readme_walkthrough_runs_verbatim_on_the_embedded_stack(tmp_path, tiny_model):
    data = tmp_path / "data"
    install_model(tiny_model, data / "models", DEMO_MODEL_NAME)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    up = spawn(["cli", "up", "--no-dashboard", "--grace", "30"],
               service_env(data_dir=str(data), api_port=str(port)), log)
    try:
        wait_until(lambda: api_healthy(url), timeout=90, what="the API", process=up, log=log)
        engine = make_engine(f"sqlite:///{data / 'basis.sqlite'}")
        with session_scope(engine) as session:
            _, key = create_key(session, "reader")
        engine.dispose()
        env = {**service_env(), "BASIS": url, "KEY": key}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    finally:
        stop(up)
    out = done.stdout
    assert '"status":"ok"' in out.replace(" ", "") or '"status": "ok"' in out, out[:500]
    assert DEMO_MODEL_NAME in out
    assert re.search(r"step 20/20 reward=", out) and "finished 20 steps" in out, out[-2000:]
    samples = [json.loads(line) for line in out.splitlines()
               if line.startswith('{"prompt"') and '"completion"' in line]
    assert samples and all(set(s) == {"prompt", "completion", "answer", "reward", "advantage"}
                           for s in samples)
    assert all(re.fullmatch(r"\d+\+\d+=", s["prompt"]) for s in samples)
    evals = json.loads(out.strip().splitlines()[-1])
    assert evals["steps"] == [0, 10, 20]
