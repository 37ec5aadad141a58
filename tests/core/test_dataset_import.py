"""Answer presets, templates and row conversion of core/services/dataset_import.py (no database),
and the committed sample datasets against the script that makes them."""

from __future__ import annotations

import pytest

from core.services.dataset_import import FieldMapping, convert_row, extract_answer
from core.services.errors import Invalid
from scripts import make_sample_datasets


@pytest.mark.parametrize("text, answer", [
    ("She pays 3 * 4 = <<3*4=12>>12 dollars.\n#### 12", "12"),
    ("#### 1,234,567", "1234567"),
    ("a #### 1\nb #### -2.5 \n", "-2.5"),  # the last marker wins
    ("#### 42\nextra text", "42"),
])
def test_gsm8k_preset(text, answer):
    assert extract_answer(text, "gsm8k") == answer


@pytest.mark.parametrize("text, answer", [
    ("so $x = \\boxed{4}$.", "4"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{1}, finally \\boxed{ \\{1, 2\\} \\cup {3} }", "\\{1, 2\\} \\cup {3}"),
    ("\\fbox{7}", "7"),
    ("\\boxed {x^{2}}", "x^{2}"),
])
def test_boxed_preset_takes_the_last_box_with_balanced_braces(text, answer):
    assert extract_answer(text, "boxed") == answer


@pytest.mark.parametrize("text, preset, words", [
    ("42", "gsm8k", "no '#### <answer>'"),
    ("####   \n", "gsm8k", "nothing after"),
    ("42", "boxed", "no \\boxed"),
    ("\\boxed{\\frac{1}{2}", "boxed", "not closed"),
    ("\\boxed{ }", "boxed", "empty"),
    ("  ", "plain", "empty"),
])
def test_presets_say_what_is_missing(text, preset, words):
    with pytest.raises(ValueError, match=words.replace("\\", "\\\\").replace("(", r"\(")):
        extract_answer(text, preset)


def test_template_rows_keep_order_and_types():
    mapping = FieldMapping(answer_field="a", prompt_template="{q} = ? ({{n}}={n})", id_field="i",
                           keep_fields=("n",))
    assert convert_row({"q": "1+1", "a": 2, "i": "r1", "n": 3}, 1, mapping) == \
        {"id": "r1", "prompt": "1+1 = ? ({n}=3)", "answer": "2", "n": 3}


@pytest.mark.parametrize("template", ["{q.__class__}", "{q[0]}", "{q!r}", "{q:>5}", "{}", "{0}", "{0}x{q",
                                      "no placeholder"])
def test_unsafe_or_broken_templates_are_refused(template):
    with pytest.raises(Invalid) as caught:
        FieldMapping(answer_field="a", prompt_template=template).validate()
    assert caught.value.param == "prompt_template"


def test_chat_prompts_get_the_system_prompt_first():
    mapping = FieldMapping(answer_field="a", prompt_field="m", system_prompt="Be brief.")
    row = {"m": [{"role": "user", "content": "hi"}], "a": "x"}
    assert convert_row(row, 1, mapping)["prompt"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def test_kept_values_must_be_json():
    mapping = FieldMapping(answer_field="a", prompt_field="q", keep_fields=("x",))
    with pytest.raises(Invalid) as caught:
        convert_row({"q": "p", "a": "1", "x": float("nan")}, 7, mapping)
    assert caught.value.param == "row 7, field x"


def test_committed_samples_match_the_script(tmp_path):
    assert make_sample_datasets.main(["--check"]) == 0
    assert make_sample_datasets.main(["--out", str(tmp_path)]) == 0
    for name in make_sample_datasets.SAMPLES:
        assert make_sample_datasets.read_rows(tmp_path / name) == \
            make_sample_datasets.read_rows(make_sample_datasets.OUT / name)
