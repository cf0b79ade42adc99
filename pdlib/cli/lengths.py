"""The paired lengths file behind ``--lengths FILE.csv`` (``kstar``, ``memory``, ``simulate``),
written by ``pdlib data lengths``: the one reader and the one writer.

Format: the header line ``input_tokens,output_tokens``, then one request per line, its input
and output token counts as two integers in 1..10^9 (``pdlib.workload.MAX_TOKENS``) separated by
a comma. Blank lines are ignored; a UTF-8 byte-order mark and CRLF line ends are accepted.
Anything else -- no header, a non-integer or out-of-range count, a missing or extra column,
an empty file -- is a one-line error naming the option, the file and the line.

Bounds of the length-aware theory on the command line: N <= ``N_LENGTHS_MAX`` (4096: its cycle
sampler draws ~max(2^20, 256 N) slots), outputs <= the theory's grid (``L_GRID_MAX`` + 1 tokens),
and for ``kstar`` (one fixed point per refill size k = 1..N-1, ~0.05-0.1 s each) N <= ``KSTAR_N_MAX``
(512) and (N-1) x max output <= ``KSTAR_WORK_MAX`` (10^6): a minute at most."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..workload import MAX_TOKENS, MAX_TOKENS_TEXT
from .output import CLIError

HEADER = "input_tokens,output_tokens"
MAX_ROWS = 10**7
MAX_BYTES = 256 * 2**20
N_LENGTHS_MAX = 4096
KSTAR_N_MAX = 512
KSTAR_WORK_MAX = 10**6
_INT = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class Lengths:
    """Paired token counts read from ``path``: ``inputs[i]``, ``outputs[i]`` are request i."""
    path: str
    inputs: np.ndarray
    outputs: np.ndarray

    @property
    def p(self) -> float:
        """Offline termination probability, 1/mean output (``theory.p_offline``)."""
        return float(1.0 / self.outputs.mean())

    @property
    def mu_L(self) -> float:
        """Mean input length."""
        return float(self.inputs.mean())

    @property
    def var_L(self) -> float:
        return float(self.inputs.var())

    def describe(self) -> dict:
        return {"lengths_file": self.path, "lengths_pairs": int(self.inputs.size)}


def format_lengths(inputs, outputs) -> str:
    """The file's text for paired counts (checked: same length, integers in 1..10^9)."""
    I, L = np.asarray(inputs, dtype=np.int64), np.asarray(outputs, dtype=np.int64)
    if I.shape != L.shape or I.ndim != 1:
        raise ValueError(f"inputs and outputs must be paired 1-d arrays, got shapes {I.shape} and {L.shape}")
    for name, v in (("input_tokens", I), ("output_tokens", L)):
        bad = np.flatnonzero((v < 1) | (v > MAX_TOKENS))
        if bad.size:
            raise ValueError(f"request {int(bad[0])}: {name} = {int(v[bad[0]])}, allowed 1..{MAX_TOKENS_TEXT}")
    body = "".join(f"{a},{b}\n" for a, b in zip(I.tolist(), L.tolist()))
    return f"{HEADER}\n{body}"


def _count(cell: str, name: str, where: str) -> int:
    s = cell.strip()
    if not _INT.fullmatch(s) or not 1 <= int(s) <= MAX_TOKENS:
        raise CLIError(f"{where}: {name} must be an integer in 1..{MAX_TOKENS_TEXT}, got {cell.strip()!r}")
    return int(s)


def read_lengths(path, option: str = "--lengths") -> Lengths:
    """Read a lengths file; every problem is a ``CLIError`` naming ``option``, the file and the line."""
    where = f"{option} {str(path)!r}"
    try:
        if os.path.isdir(path):
            raise CLIError(f"{where}: is a folder, not a lengths file")
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise CLIError(f"{where}: {size} bytes; lengths files are limited to {MAX_BYTES} bytes")
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as e:      # ValueError: a NUL in the path
        raise CLIError(f"{where}: cannot read the file ({getattr(e, 'strerror', None) or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CLIError(f"{where} line {line}: not UTF-8 text (byte {e.start})") from None
    lines = text.splitlines()
    rows = [(i, s) for i, s in enumerate(lines, 1) if s.strip()]
    if not rows:
        raise CLIError(f"{where}: the file is empty (expected the header {HEADER!r}, then one "
                       "'input,output' line per request)")
    n0, head = rows[0]
    if head.strip().replace(" ", "") != HEADER:
        raise CLIError(f"{where} line {n0}: missing header {HEADER!r} (got {head.strip()[:60]!r})")
    rows = rows[1:]
    if not rows:
        raise CLIError(f"{where}: no requests after the header {HEADER!r}")
    if len(rows) > MAX_ROWS:
        raise CLIError(f"{where}: {len(rows)} requests; at most {MAX_ROWS} are read")
    I = np.empty(len(rows), dtype=np.int64)
    L = np.empty(len(rows), dtype=np.int64)
    for j, (n, s) in enumerate(rows):
        cells = s.split(",")
        if len(cells) != 2:
            raise CLIError(f"{where} line {n}: expected 2 comma-separated counts (input_tokens,output_tokens), "
                           f"got {len(cells)} field(s)")
        I[j] = _count(cells[0], "input_tokens", f"{where} line {n}")
        L[j] = _count(cells[1], "output_tokens", f"{where} line {n}")
    return Lengths(str(path), I, L)


def lengths_or_options(args, option_names: tuple[str, ...]) -> Lengths | None:
    """``read_lengths(args.lengths)`` when ``--lengths`` is given (then none of ``option_names``,
    which it replaces, may be given), else None."""
    if args.lengths is None:
        return None
    given = [o for o in option_names if getattr(args, o.lstrip("-").replace("-", "_")) is not None]
    if given:
        raise CLIError(f"{given[0]} cannot be combined with --lengths (p = 1/mean output and the input "
                       "mean/variance are taken from the lengths file)")
    return read_lengths(args.lengths)


def check_theory_bounds(lens: Lengths, N: int, *, kstar: bool = False) -> None:
    """Refuse a length-aware computation the theory cannot do, or not in bounded time."""
    from ..theory.lengths_core import L_GRID_MAX
    where = f"--lengths {lens.path!r}"
    if N > N_LENGTHS_MAX:
        raise CLIError(f"--N must be <= {N_LENGTHS_MAX} with --lengths (the length-aware model's cycle sampler "
                       f"draws ~256 N slots), got {N}")
    top = int(lens.outputs.max())
    if top - 1 > L_GRID_MAX:
        i = int(np.argmax(lens.outputs)) + 1
        raise CLIError(f"{where}: request {i} has output_tokens {top}, above the length-aware model's grid "
                       f"({L_GRID_MAX + 1} tokens)")
    if top == 1:
        raise CLIError(f"{where}: every output is 1 token: every request finishes in its prefill (no decode "
                       "phase to model)")
    if kstar and N > KSTAR_N_MAX:
        raise CLIError(f"--N must be <= {KSTAR_N_MAX} for kstar with --lengths (the length-aware k* solves a "
                       f"fixed point per k = 1..N-1), got {N}")
    if kstar and (N - 1) * top > KSTAR_WORK_MAX:
        raise CLIError(f"--N {N} with --lengths {lens.path!r}: (N-1) x max output = {(N - 1) * top} exceeds "
                       f"{KSTAR_WORK_MAX:.0e} (the length-aware k* solves a fixed point per k); lower --N or cap "
                       "the outputs (data lengths --max-output-tokens)")
