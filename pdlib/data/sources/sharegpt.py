"""ShareGPT V3 (``ShareGPT_V3_unfiltered_cleaned_split.json`` format: a JSON list of
``{id, conversations: [{from, value}]}``; raw file on the hub in
``anon8231489123/ShareGPT_Vicuna_unfiltered``). Prompt = the first human turn; reference output =
the gpt turn right after it. Conversations with no such reply are skipped (counted), or kept
prompt-only with ``keep_prompt_only``."""
from __future__ import annotations

from ..errors import BadRecord
from ..fields import get_list
from ..text import TextRecord, locate_rows

HUB_ID = "anon8231489123/ShareGPT_Vicuna_unfiltered"
HUB_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
HUMAN = {"human", "user"}
REPLY = {"gpt", "chatgpt", "assistant", "bard", "bing"}


def locate(spec, data_dir):
    if spec.split:
        cands = [f"sharegpt/{spec.split}.json", f"sharegpt/sharegpt_{spec.split}.json"]
    else:
        cands = [f"sharegpt/{HUB_FILE}", "sharegpt/sharegpt_sample.json"]
    return locate_rows(spec, data_dir, cands, hub={"id": HUB_ID, "file": HUB_FILE})


def _turn(convs, i):
    t = convs[i]
    if not isinstance(t, dict):
        raise BadRecord(f"conversations[{i}]", f"is {type(t).__name__}, expected an object")
    who, text = t.get("from"), t.get("value")
    if not isinstance(who, str):
        raise BadRecord(f"conversations[{i}].from", "missing" if who is None else "not a string")
    if not isinstance(text, str):
        raise BadRecord(f"conversations[{i}].value", "missing" if text is None else "not a string")
    return who.lower(), text


def parse(row, index, spec):
    convs = get_list(row, "conversations")
    sid = row.get("id", row.get("conversation_id"))
    sid = str(sid) if sid is not None else str(index)
    for i in range(len(convs)):
        who, text = _turn(convs, i)
        if who in HUMAN:
            break
    else:
        raise BadRecord("conversations", "no human turn")
    if not text.strip():
        raise BadRecord(f"conversations[{i}].value", "empty first human turn")
    if i + 1 < len(convs):
        who2, reply = _turn(convs, i + 1)
        if who2 in REPLY and reply.strip():
            return TextRecord(index, sid, text, reply)
    if spec.keep_prompt_only:
        return TextRecord(index, sid, text, None)
    raise BadRecord("conversations", "no gpt reply after the first human turn")
