"""trainer.registry: the one registry type behind estimators, rewards and rollout engines."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from trainer.advantages import ESTIMATORS
from trainer.registry import NoOptions, Registry
from trainer.rewards import REWARDS
from trainer.rollout import ENGINES


def test_duplicate_name_is_refused_and_names_the_holder():
    r: Registry[object] = Registry("widget")

    @r.register("a")
    def first():
        pass

    with pytest.raises(ValueError, match=r"widget 'a' is already registered \(.*\.first\)"):
        r.add("a", object())
    assert r["a"] is first


def test_unknown_name_lists_every_valid_name_including_lazy_ones():
    r: Registry[int] = Registry("widget", lazy={"z": "no.such.module"})
    r.add("b", 1)
    r.add("a", 2)
    assert r.lookup("a") == 2
    with pytest.raises(ValueError, match=r"^unknown widget 'c'; valid names: a, b, z$"):
        r.lookup("c")


def test_lazy_name_imports_its_module_once_and_a_missing_module_says_not_installed(tmp_path,
                                                                                  monkeypatch):
    (tmp_path / "lazy_widget_mod.py").write_text(
        "from tests.trainer.test_registry import LAZY\nLAZY.add('w', 42)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_widget_mod", raising=False)
    assert "w" not in LAZY and LAZY.names() == ["gone", "w"]
    assert LAZY.lookup("w") == 42 and LAZY.lookup("w") == 42
    with pytest.raises(ValueError, match=r"widget 'gone' is not installed here: No module named"):
        LAZY.lookup("gone")


LAZY: Registry[int] = Registry("widget", lazy={"w": "lazy_widget_mod", "gone": "no_such_mod_xyz"})


def test_the_three_axes_share_the_registry_type():
    assert all(isinstance(r, Registry) for r in (ESTIMATORS, REWARDS, ENGINES))
    assert (ESTIMATORS.kind, REWARDS.kind, ENGINES.kind) == ("estimator", "reward", "rollout engine")


def test_no_options_refuses_any_key():
    assert NoOptions().model_dump() == {}
    with pytest.raises(ValidationError, match="extra"):
        NoOptions(anything=1)
