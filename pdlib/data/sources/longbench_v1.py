"""LongBench v1 (hub ``THUDM/LongBench``: its ``data.zip`` holds ``data/<task>.jsonl``, read
directly since the repo's loading script is not supported by recent ``datasets``; locally
``<task>.jsonl`` rows as in the official data.zip: ``{input, context, answers, length, dataset,
language, all_classes, _id}``). Prompt = context, then the question (``input``) when there is
one; reference output = ``answers[0]``."""
from __future__ import annotations

import zipfile

from ..errors import BadRecord, DataError
from ..fields import get_list, get_str
from ..files import parse_jsonl
from ..hub import download_hub_file
from ..spec import DATASETS
from ..text import TextRecord, locate_rows, read_origin

HUB_ID = "THUDM/LongBench"


def locate(spec, data_dir):
    tasks = DATASETS["longbench_v1"].splits
    if not spec.split:
        raise ValueError(f"longbench_v1 needs split= a task, one of {list(tasks)}")
    return locate_rows(spec, data_dir, ["longbench_v1", "longbench_v1/data", "longbench/data"], stem=spec.split,
                       hub={"id": HUB_ID, "file": "data.zip", "member": f"data/{spec.split}.jsonl"})


def read(spec, origin):
    """Hub: ``data.zip`` downloaded; local: row files, or the official ``data.zip`` itself."""
    if origin.hub is not None:
        h = origin.hub
        return read_zip(download_hub_file("longbench_v1", h["id"], h["file"], DATASETS["longbench_v1"].local),
                        h["member"])
    if len(origin.files) == 1 and origin.files[0].suffix.lower() == ".zip":
        return read_zip(origin.files[0], f"data/{spec.split}.jsonl")
    return read_origin(spec, origin)


def read_zip(archive, member: str):
    try:
        with zipfile.ZipFile(archive) as z:
            raw = z.read(member)
    except KeyError:
        raise DataError(f"no member {member}", file=archive) from None
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"not a readable zip ({e})", file=archive) from None
    return parse_jsonl(raw, f"{archive}!{member}")


def parse(row, index, spec):
    context = get_str(row, "context")
    question = get_str(row, "input", allow_empty=True, default="")
    answers = get_list(row, "answers")
    if not isinstance(answers[0], str) or not answers[0].strip():
        raise BadRecord("answers[0]", "empty or not a string")
    prompt = f"{context}\n\nQuestion: {question}\nAnswer:" if question.strip() else context
    sid = row.get("_id")
    return TextRecord(index, str(sid) if sid is not None else str(index), prompt, answers[0])
