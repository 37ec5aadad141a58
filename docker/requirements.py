"""Print pyproject's runtime dependencies for one image, minus the ML packages it never imports.

Used by docker/Dockerfile.api and docker/Dockerfile.dashboard (stdlib only: it runs before anything
is installed): `python requirements.py pyproject.toml api|dashboard`. The exclusions are proven by
tests/deploy: the API's whole job path runs with the excluded modules made unimportable, and no
dashboard module (or project module it imports) imports one.
- api (and migrate): validates job configs through trainer.config, which needs numpy, scipy and
  the reward and estimator registries, but never torch, transformers, peft or safetensors.
- dashboard: talks only to the REST API, so it needs none of the ML stack.
"""

import re
import sys
import tomllib

# Distribution name -> top-level module, so the tests can block the modules by name.
EXCLUDED = {
    "api": {"torch": "torch", "transformers": "transformers", "peft": "peft", "safetensors": "safetensors"},
    "dashboard": {"torch": "torch", "transformers": "transformers", "peft": "peft",
                  "safetensors": "safetensors", "math-verify": "math_verify", "scipy": "scipy"},
}


def requirements(pyproject_path: str, image: str) -> list[str]:
    with open(pyproject_path, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    excluded = EXCLUDED[image]
    return [d for d in deps if re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower() not in excluded]


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2])))
