"""Write the sample datasets of examples/datasets/: `python scripts/make_sample_datasets.py [--check]`.

One small file per shape that `POST /v1/datasets/import` (`basis datasets import`) maps, made here
from fixed rows and seeds so nothing is downloaded and every run writes the same rows:

- gsm8k_sample.parquet: GSM8K's shape, `question` and `answer` (worked solution ending `#### N`,
  thousands written with commas); import with answer_preset gsm8k.
- math_sample.json: MATH's shape (a JSON array), `problem`, `solution` (LaTeX with the final answer
  in `\\boxed{...}`, nested braces included), `level`, `type`; import with answer_preset boxed.
- plain_sample.csv: a plain question/answer CSV, `question`, `answer`; answer_preset plain.
- demo_arithmetic.parquet: the demo task (the 4000 rows `basis up --demo` uploads,
  cli.demo.demo_dataset) under other field names: `uid`, `expression` ("13+71"), `solution`
  ("13+71 = 84\\n#### 84"), `difficulty`, `level`. DEMO_MAPPING below imports it back to exactly
  the demo's JSONL (same bytes, same sha256), so a job trained on it is the demo job.

`--check` compares the files' rows with what this script would write (exit 1 on a difference);
tests/core/test_dataset_import.py runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "examples" / "datasets"

# The form fields of POST /v1/datasets/import that turn demo_arithmetic.parquet into the demo's rows.
DEMO_MAPPING: dict[str, str] = {
    "id_field": "uid",
    "prompt_template": "{expression}=",
    "answer_field": "solution",
    "answer_preset": "gsm8k",
    "keep_fields": "difficulty,level",
}

GSM8K_ITEMS = [  # (name, count, unit price, extra): "bought count at price, then spent extra"
    ("Natalia", 48, 3, 25), ("Weng", 12, 50, 600), ("Betty", 7, 15, 45), ("Julie", 120, 12, 300),
    ("James", 3, 450, 1200), ("Albert", 16, 8, 40), ("Ken", 250, 9, 750), ("Mark", 35, 64, 100),
]


def gsm8k_rows() -> list[dict[str, str]]:
    rows = []
    for name, count, price, extra in GSM8K_ITEMS:
        cost = count * price
        total = cost + extra
        rows.append({
            "question": f"{name} buys {count} notebooks at ${price} each and then pays ${extra} "
                        f"for shipping. How many dollars does {name} spend in all?",
            "answer": f"The notebooks cost {count} * {price} = <<{count}*{price}={cost}>>{cost} "
                      f"dollars.\nWith shipping that is {cost} + {extra} = <<{cost}+{extra}={total}>>"
                      f"{total} dollars.\n#### {total:,}",
        })
    return rows


def math_rows() -> list[dict[str, str]]:
    problems = [
        ("What is $\\frac{1}{2} + \\frac{1}{3}$?", "$\\frac{1}{2}+\\frac{1}{3} = \\frac{3}{6} + "
         "\\frac{2}{6} = \\boxed{\\frac{5}{6}}$.", "Level 1", "Prealgebra"),
        ("Solve $2x + 3 = 11$ for $x$.", "Subtracting 3 gives $2x = 8$, so $x = \\boxed{4}$.",
         "Level 1", "Algebra"),
        ("Simplify $\\sqrt{72}$.", "$\\sqrt{72} = \\sqrt{36 \\cdot 2} = \\boxed{6\\sqrt{2}}$.",
         "Level 2", "Algebra"),
        ("What is the remainder when $2^{10}$ is divided by 7?", "$2^3 = 8 \\equiv 1$, so $2^{10} "
         "= (2^3)^3 \\cdot 2 \\equiv \\boxed{2} \\pmod{7}$.", "Level 3", "Number Theory"),
        ("Find the vertex of $y = x^2 - 4x + 1$.", "Completing the square, $y = (x-2)^2 - 3$, so "
         "the vertex is $\\boxed{(2,-3)}$.", "Level 2", "Algebra"),
        ("How many ways can 3 books be chosen from 5?", "$\\binom{5}{3} = \\boxed{10}$.",
         "Level 1", "Counting & Probability"),
    ]
    return [{"problem": p, "solution": s, "level": lv, "type": t} for p, s, lv, t in problems]


def plain_rows() -> list[dict[str, str]]:
    pairs = [("What is the capital of France?", "Paris"),
             ("Name the largest planet in the Solar System.", "Jupiter"),
             ("Which element has the symbol O?", "oxygen"),
             ("Spell the word 'cat', then 'dog', separated by a comma.", "cat, dog"),
             ("How many sides does a hexagon have?", " 6 ")]
    return [{"question": q, "answer": a} for q, a in pairs]


def demo_rows() -> list[dict[str, Any]]:
    """The demo's rows (cli.demo.demo_dataset) renamed: what DEMO_MAPPING maps back."""
    from trainer.cli import DEMO_DATA_SEED, DEMO_ROWS
    from trainer.tasks import generate_arithmetic

    rows = []
    for row in generate_arithmetic(DEMO_ROWS, seed=DEMO_DATA_SEED):
        expression = row["prompt"].removesuffix("=")
        rows.append({"uid": row["id"], "expression": expression,
                     "solution": f"{expression} = {row['answer']}\n#### {row['answer']}",
                     "difficulty": row["difficulty"], "level": row["level"]})
    return rows


def _parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _json(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _csv(rows: list[dict[str, Any]], path: Path) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


SAMPLES = {  # file name -> (rows, writer)
    "gsm8k_sample.parquet": (gsm8k_rows, _parquet),
    "math_sample.json": (math_rows, _json),
    "plain_sample.csv": (plain_rows, _csv),
    "demo_arithmetic.parquet": (demo_rows, _parquet),
}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a sample file as its writer stored them (CSV cells are text)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, (make, write) in SAMPLES.items():
        rows, path = make(), args.out / name
        if args.check:
            if not path.is_file() or read_rows(path) != rows:
                stale.append(name)
            continue
        write(rows, path)
        print(f"wrote {path} ({len(rows)} rows)")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/make_sample_datasets.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
