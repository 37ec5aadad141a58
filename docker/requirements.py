"""Print pyproject's runtime dependencies minus the ML stack the dashboard never imports.

Used by docker/Dockerfile.dashboard (stdlib only: it runs before anything is installed) and by
tests/deploy/test_deploy_files.py, which checks the dashboard imports none of ML_PACKAGES.
"""

import re
import sys
import tomllib

# Distribution name -> top-level module, so the test can block the modules by name.
ML_PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "safetensors": "safetensors",
    "math-verify": "math_verify",
    "scipy": "scipy",
}


def dashboard_requirements(pyproject_path: str) -> list[str]:
    with open(pyproject_path, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return [d for d in deps if re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower() not in ML_PACKAGES]


if __name__ == "__main__":
    print("\n".join(dashboard_requirements(sys.argv[1])))
