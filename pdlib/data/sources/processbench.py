"""ProcessBench (hub ``Qwen/ProcessBench``, splits gsm8k | math | olympiadbench | omni-math;
locally ``<split>.jsonl|.json|.parquet`` rows ``{id, generator, problem, steps, final_answer_correct,
label}``). Prompt = problem; reference output = the solution steps joined by blank lines."""
from __future__ import annotations

from ..errors import BadRecord
from ..fields import get_list, get_str
from ..spec import DATASETS
from ..text import TextRecord, locate_rows

HUB_ID = "Qwen/ProcessBench"


def locate(spec, data_dir):
    splits = DATASETS["processbench"].splits
    if spec.split not in splits:
        raise ValueError(f"processbench needs split= one of {list(splits)} (got {spec.split!r})")
    return locate_rows(spec, data_dir, ["processbench"], stem=spec.split,
                       hub={"id": HUB_ID, "split": spec.split})


def parse(row, index, spec):
    problem = get_str(row, "problem")
    steps = get_list(row, "steps")
    for i, s in enumerate(steps):
        if not isinstance(s, str):
            raise BadRecord(f"steps[{i}]", f"is {type(s).__name__}, expected a string")
    output = "\n\n".join(steps)
    if not output.strip():
        raise BadRecord("steps", "all steps empty")
    sid = row.get("id")
    return TextRecord(index, str(sid) if sid is not None else str(index), problem, output)
