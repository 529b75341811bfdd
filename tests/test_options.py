"""Every option value is checked before any work starts: one line naming the option, the
value and an example, in every magic and in its Python twin.

Each magic line below also names models that do not exist: the option's error must come
first, which proves the check runs before any model is resolved or engine started.
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

import llmops_magics
from llmops_magics.core.options import OptionError

NO = "/no/such/model"
SHADOW = f"%%shadow --primary {NO} --candidate {NO}"

BAD = [
    ("%%llm --max-tokens abc --model " + NO + "\nhi", "--max-tokens abc", "--max-tokens 64"),
    ("%%llm --max-tokens 0 --model " + NO + "\nhi", "--max-tokens 0", "--max-tokens 64"),
    ("%%llm --temperature hot --model " + NO + "\nhi", "--temperature hot", "--temperature 0.7"),
    ("%%llm --temperature -1 --model " + NO + "\nhi", "--temperature -1", "--temperature 0.7"),
    ("%%llm --seed 1.5 --model " + NO + "\nhi", "--seed 1.5", "--seed 0"),
    (SHADOW + " --n abc\nhi", "--n abc", "--n 50"),
    (SHADOW + " --n 0\nhi", "--n 0", "--n 50"),
    (SHADOW + " --sample-seed x\nhi", "--sample-seed x", "--sample-seed 0"),
    (SHADOW + " --max-tokens -3\nhi", "--max-tokens -3", "--max-tokens 64"),
    (SHADOW + " --memory-limit-gb lots\nhi", "--memory-limit-gb lots", "--memory-limit-gb 8"),
    (SHADOW + " --engine-plan sideways\nhi", "--engine-plan sideways", "--engine-plan one-at-a-time"),
    (SHADOW + " --adapter-mode fused\nhi", "--adapter-mode fused", "--adapter-mode merged"),
    (
        SHADOW + " --threshold max_differing_rate=abc\nhi",
        "--threshold max_differing_rate=abc",
        "--threshold max_differing_rate=0.1",
    ),
    (
        SHADOW + " --threshold max_differing_rate=2\nhi",
        "--threshold max_differing_rate=2",
        "--threshold max_differing_rate=0.1",
    ),
    (SHADOW + " --threshold bootstrap=10\nhi", "--threshold bootstrap=10", "--threshold bootstrap=2000"),
    (SHADOW + " --threshold nonsense=1\nhi", "--threshold nonsense=1", "e.g."),
    (
        SHADOW + " --candidate-engine-args dtype=bfloat17\nhi",
        "--candidate-engine-args dtype=bfloat17",
        "--candidate-engine-args dtype=float32",
    ),
    (
        SHADOW + " --primary-engine-args enforce_eagr=true\nhi",
        "--primary-engine-args enforce_eagr=true",
        "did you mean enforce_eager",
    ),
    (f"%adapter_check {NO} --base {NO} --max-lora-rank abc", "--max-lora-rank abc", "--max-lora-rank 16"),
    (f"%adapter_check {NO} --base {NO} --max-new-tokens 0", "--max-new-tokens 0", "--max-new-tokens 16"),
    ("%llm_engines --log x --lines many", "--lines many", "--lines 50"),
    ("%lance_migrate backfill no_such_table --batch 0", "--batch 0", "--batch 256"),
    ("%lance_migrate backfill no_such_table --max-batches few", "--max-batches few", "--max-batches 10"),
    ("%lance_migrate index no_such_table --min-rows -5", "--min-rows -5", "--min-rows 5000"),
    ("%lance_migrate shadow no_such_table --queries qs --k 0", "--k 0", "--k 10"),
]


@pytest.mark.parametrize("cell, names, example", BAD, ids=[b[1] for b in BAD])
def test_a_bad_option_value_is_one_line_before_any_work(shell, cell, names, example):
    shell.user_ns["qs"] = ["a query"]
    with pytest.raises(UsageError) as err:
        if cell.startswith("%%"):
            shell.run_cell(cell)
        else:
            magic, _, line = cell[1:].partition(" ")
            shell.run_line_magic(magic, line)
    text = str(err.value)
    assert text.startswith("OptionError: "), text
    assert names in text and example in text, text
    assert "\n" not in text.strip()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: llmops_magics.llm("hi", model=NO, max_tokens="abc"), "max_tokens='abc'"),
        (lambda: llmops_magics.shadow(["hi"], primary=NO, candidate=NO, n=0), "n=0"),
        (
            lambda: llmops_magics.shadow(["hi"], primary=NO, candidate=NO, max_differing_rate="abc"),
            "max_differing_rate='abc'",
        ),
        (lambda: llmops_magics.shadow(["hi"], primary=NO, candidate=NO, adapter_mode="fused"), "adapter_mode='fused'"),
        (lambda: llmops_magics.check_adapter(NO, base=NO, max_lora_rank=0), "max_lora_rank=0"),
    ],
)
def test_the_python_twins_check_the_same_way(call, message):
    with pytest.raises(OptionError) as err:
        call()
    assert message in str(err.value) and "(e.g. " in str(err.value)


def test_good_values_given_as_text_are_accepted():
    from llmops_magics.core import options

    assert options.check(max_tokens="64", temperature="0.5", n="3") == {"max_tokens": 64, "temperature": 0.5, "n": 3}
    assert options.check_thresholds({"max_differing_rate": "0.1", "bootstrap": "500"}) == {
        "max_differing_rate": 0.1,
        "bootstrap": 500,
    }
    assert options.check_engine_args({"dtype": "bfloat16", "enforce_eager": False})["dtype"] == "bfloat16"
