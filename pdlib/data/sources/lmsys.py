"""LMSYS-Chat-1M (hub ``lmsys/lmsys-chat-1m``, gated; locally parquet/JSONL/JSON rows in the hub
format ``{conversation_id, model, conversation: [{role, content}], language, turn, ...}``).
Prompt = the first user turn; reference output = the assistant turn right after it."""
from __future__ import annotations

from ..errors import BadRecord
from ..fields import get_list
from ..text import TextRecord, locate_rows

HUB_ID = "lmsys/lmsys-chat-1m"


def locate(spec, data_dir):
    split = spec.split or "train"
    return locate_rows(spec, data_dir, ["lmsys"], hub={"id": HUB_ID, "split": split})


def parse(row, index, spec):
    conv = get_list(row, "conversation")
    sid = row.get("conversation_id")
    sid = str(sid) if sid is not None else str(index)
    turns = []
    for i, t in enumerate(conv):
        if not isinstance(t, dict) or not isinstance(t.get("role"), str) or not isinstance(t.get("content"), str):
            raise BadRecord(f"conversation[{i}]", "expected {role: str, content: str}")
        turns.append((t["role"].lower(), t["content"]))
    for i, (role, text) in enumerate(turns):
        if role == "user":
            break
    else:
        raise BadRecord("conversation", "no user turn")
    if not text.strip():
        raise BadRecord(f"conversation[{i}].content", "empty first user turn")
    if i + 1 >= len(turns) or turns[i + 1][0] != "assistant" or not turns[i + 1][1].strip():
        raise BadRecord("conversation", "no assistant reply after the first user turn")
    return TextRecord(index, sid, text, turns[i + 1][1])
