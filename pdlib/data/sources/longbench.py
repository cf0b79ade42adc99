"""LongBench v2 (hub ``THUDM/LongBench-v2``, split ``train``; rows ``{_id, domain, sub_domain,
difficulty, length, question, choice_A..D, answer, context}``). Locally either such rows, or the
markdown layout of ``../shared/data/longbench_v2``: ``<domain>/sample_*_<length>.md`` (metadata,
question, choices, answer) beside ``..._context.txt``; the markdown is read into hub rows and
parsed by the same ``parse``. ``split`` selects the length bucket (short | medium | long).

Prompt = the context, the question and the four choices, asking for the answer in the form
``The correct answer is (X)``; the reference output is that sentence."""
from __future__ import annotations

import re
from pathlib import Path

from pdlib.workload import Skip

from ..errors import BadRecord, DataError
from ..fields import get_str
from ..files import SKIPPED, read_text
from ..spec import DATASETS
from ..text import Origin, TextRecord, locate_rows, read_origin

HUB_ID = "THUDM/LongBench-v2"
SECTIONS = ("Metadata", "Question", "Choices", "Answer")
META_KEYS = {"ID": "_id", "Domain": "domain", "Subdomain": "sub_domain", "Difficulty": "difficulty", "Length": "length"}
PROMPT = ("Please read the following text and answer the question below.\n\n<text>\n{context}\n</text>\n\n"
          "What is the correct answer to this question: {question}\nChoices:\n(A) {A}\n(B) {B}\n(C) {C}\n(D) {D}\n\n"
          'Format your response as follows: "The correct answer is (insert answer here)".')


def _md_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("sample_*.md") if p.is_file())


def locate(spec, data_dir):
    if spec.split and spec.split not in DATASETS["longbench"].splits:
        raise ValueError(f"longbench split must be one of {list(DATASETS['longbench'].splits)} (got {spec.split!r})")
    for folder in ([Path(spec.path).expanduser()] if spec.path else
                   [Path(data_dir) / "longbench_v2"] if data_dir else []):
        if folder.is_dir() and _md_files(folder):
            return Origin(_md_files(folder), layout="markdown")
    return locate_rows(spec, data_dir, ["longbench_v2"], hub={"id": HUB_ID, "split": "train"})


def read(spec, origin):
    if origin.layout != "markdown":
        return read_origin(spec, origin)
    rows, skips = [], []
    for i, md in enumerate(origin.files):
        try:
            rows.append(markdown_row(md))
        except DataError as e:
            rows.append(SKIPPED)
            skips.append(Skip(i, f"file: {e}", md.stem))
    return rows, skips


def markdown_row(md: Path) -> dict:
    """One ``sample_*.md`` (+ its ``_context.txt``) as a LongBench v2 hub row."""
    text = read_text(md)
    sections, cur = {}, None
    for line in text.splitlines():
        m = re.fullmatch(r"#\s+(\w+)\s*", line)
        if m and m.group(1) in SECTIONS:
            cur = m.group(1)
            sections[cur] = []
        elif cur:
            sections[cur].append(line)
    row: dict = {}
    for line in sections.get("Metadata", []):
        m = re.match(r"-\s*(\w+):\s*(.*)", line)
        if m and m.group(1) in META_KEYS:
            row[META_KEYS[m.group(1)]] = m.group(2).strip()
    row["question"] = "\n".join(sections.get("Question", [])).strip()
    choice = None
    for line in sections.get("Choices", []):
        m = re.match(r"-\s*([ABCD]):\s?(.*)", line)
        if m:
            choice = f"choice_{m.group(1)}"
            row[choice] = m.group(2)
        elif choice and line.strip():
            row[choice] += "\n" + line
    row["answer"] = "\n".join(sections.get("Answer", [])).strip()
    ctx = md.with_name(md.stem + "_context.txt")
    if not ctx.is_file():
        raise DataError("context file missing", file=ctx)
    row["context"] = read_text(ctx)
    return row


def parse(row, index, spec):
    if spec.split and isinstance(row, dict) and row.get("length") != spec.split:
        return None
    context = get_str(row, "context")
    question = get_str(row, "question")
    choices = {c: get_str(row, f"choice_{c}") for c in "ABCD"}
    answer = get_str(row, "answer").strip()
    if answer not in choices:
        raise BadRecord("answer", f"{answer[:20]!r} is not one of A, B, C, D")
    prompt = PROMPT.format(context=context.strip(), question=question.strip(), **{c: v.strip() for c, v in choices.items()})
    sid = row.get("_id")
    return TextRecord(index, str(sid) if sid is not None else str(index), prompt, f"The correct answer is ({answer}).")
