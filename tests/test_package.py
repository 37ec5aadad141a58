import importlib


def test_packages_import():
    for name in ["trainer", "core", "api", "worker", "client", "cli", "dashboard"]:
        assert importlib.import_module(name).__name__ == name
