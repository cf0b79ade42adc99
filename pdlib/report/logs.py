"""Engine logs out of the reports: the stderr streams of an executed notebook (vLLM's and the
kernel's log lines, warnings, progress bars) and stdout lines that are log records go to
``<notebook>.log`` beside the report; the report keeps one link in their place.

``split_logs(nb, log_path)`` changes the notebook node (the copy being exported, not the
``.ipynb`` on disk) and writes the log atomically; a notebook without log lines gets no file.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from pdlib.records import atomic_write_text

# A stdout line that is a log record: vLLM's "INFO 12-02 06:40:01 [file.py:12] ...", Python
# logging's "WARNING:name:..." / "[name] WARNING | ...", and tqdm progress bars ("... 12/40 [00:01<...").
LOG_LINE = re.compile(r"^\s*(\(\w+ pid=\d+\)\s*)?((DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b[\s:]"
                      r"|\[[\w.-]+\]\s+(DEBUG|INFO|WARNING|ERROR)\b"
                      r"|.*\|\s*\d+/\d+\s*\[\d+:\d+)")


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _is_log(line: str) -> bool:
    return bool(LOG_LINE.match(ANSI.sub("", line)))


def split_logs(nb, log_path: Path) -> int:
    """Move log output of ``nb`` (an nbformat node) into ``log_path``; returns the number of
    lines moved. Each cell that lost log lines gets one HTML output linking the log file."""
    from nbformat.v4 import new_output
    log_path = Path(log_path)
    chunks, moved = [], 0
    for i, cell in enumerate(nb.get("cells", [])):
        outs = cell.get("outputs")
        if not outs:
            continue
        kept, cell_log = [], []
        for out in outs:
            if out.get("output_type") != "stream":
                kept.append(out)
                continue
            text = out.get("text", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            if out.get("name") == "stderr":
                cell_log.append(text)
                continue
            lines = text.splitlines(keepends=True)
            logs = [ln for ln in lines if _is_log(ln)]
            if logs:
                cell_log.append("".join(logs))
                rest = "".join(ln for ln in lines if not _is_log(ln))
                if rest.strip():
                    kept.append(new_output("stream", name=out.get("name", "stdout"), text=rest))
            else:
                kept.append(out)
        if cell_log:
            text = ANSI.sub("", "".join(cell_log))
            n = text.count("\n") + (0 if text.endswith("\n") else 1)
            moved += n
            chunks.append(f"===== cell {i} =====\n{text}{'' if text.endswith(chr(10)) else chr(10)}")
            link = (f"<p style='font-size:85%;color:#666'>{n} engine/log line(s) of this step: "
                    f"<a href='{html.escape(log_path.name)}'>{html.escape(log_path.name)}</a></p>")
            kept.append(new_output("display_data", data={"text/html": link, "text/plain": f"log: {log_path.name}"}))
            cell["outputs"] = kept
    if chunks:
        atomic_write_text(log_path, "".join(chunks))
    return moved
