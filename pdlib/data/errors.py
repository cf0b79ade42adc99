"""Errors raised by the workload loaders.

``DataError`` is a whole-source failure (nothing usable could be read) and names the file,
the record and the field; ``BadRecord`` is raised by a per-record parser and becomes a counted
``Skip(index, reason)``; ``HubUnavailable`` says a hub-only dataset has neither hub access nor a
local copy, and how to point at one.
"""
from __future__ import annotations


class DataError(ValueError):
    """A source that cannot be read. ``str(e)`` is one line: ``FILE: record I: field 'F': what``."""

    def __init__(self, message: str, *, file=None, record: int | None = None, field: str | None = None):
        self.file, self.record, self.field, self.detail = file, record, field, message
        where = [str(file)] if file is not None else []
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(" | ".join(line.strip() for line in ": ".join(where + [message]).splitlines()
                                    if line.strip()))   # one line, whatever the wrapped error printed


class HubUnavailable(DataError):
    """A hub dataset with no local copy while the Hugging Face hub cannot be reached."""


class BadRecord(Exception):
    """One unusable record; the loader turns it into ``Skip(index, "field: reason")``."""

    def __init__(self, field: str | None, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}" if field else reason)
