"""Stanford Alpaca (hub ``tatsu-lab/alpaca``; locally ``alpaca_data.json`` format:
a JSON list of ``{instruction, input, output}``). Prompt = instruction, plus a blank line and
the input when there is one; reference output = ``output``."""
from __future__ import annotations

from ..fields import get_str
from ..text import TextRecord, locate_rows

HUB_ID = "tatsu-lab/alpaca"


def locate(spec, data_dir):
    split = spec.split or "train"
    cands = ["alpaca/alpaca_data.json", "alpaca/alpaca_5000.json"] if split == "train" else [f"alpaca/{split}.json"]
    return locate_rows(spec, data_dir, cands, hub={"id": HUB_ID, "split": split})


def parse(row, index, spec):
    instruction = get_str(row, "instruction")
    extra = get_str(row, "input", allow_empty=True, default="")
    output = get_str(row, "output")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return TextRecord(index, str(index), prompt, output)
