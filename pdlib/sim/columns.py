"""Every per-step column of a simulated run, rebuilt at once from the prefill events.

``build_columns`` turns what ``events.event_loop`` returns into the StepLog schema's numeric
columns (numpy; plus ``is_prefill`` and ``finished_count``, which ``pdlib.metrics`` reads) and
the per-request arrays, with difference arrays instead of a loop over steps. The per-step id
lists are ``RaggedIds`` (one flat array and offsets), read as lists of lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class RaggedIds(Sequence):
    """Per-step id lists stored compactly: step i holds ``values[offsets[i]:offsets[i+1]]``
    (mapped through ``labels`` when given). Behaves as a read-only list of lists."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray, labels=None):
        self.values, self.offsets, self.labels = values, offsets, labels

    def __len__(self):
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        v = self.values[self.offsets[i] : self.offsets[i + 1]]
        if self.labels is None:
            return v.tolist()
        return [self.labels[x] for x in v.tolist()]

    def __repr__(self):
        return f"RaggedIds({len(self)} steps, {len(self.values)} ids)"


def build_columns(pf_clock, pf_n, D_end, I, L, timing, k0, k_changes, kv_bytes_per_token, record_ids, labels=None):
    """Every per-step column for the whole run from the prefill events (vectorized)."""
    n_pf = pf_clock.size
    n_adm = int(pf_n.sum())
    I, L = I[:n_adm], L[:n_adm]
    pf_idx = np.repeat(np.arange(n_pf), pf_n)
    a = pf_clock[pf_idx]  # decode clock at admission
    fin = a + L - 1  # decode clock of the finishing step (== a: in prefill)
    S = D_end + n_pf
    g_pf = pf_clock + np.arange(n_pf)  # global index of prefill j
    is_prefill = np.zeros(S, dtype=bool)
    is_prefill[g_pf] = True

    # decode steps d = 1..D_end: batch = #{a < d <= fin}; alive after = #{a < d < fin}
    dec = fin > a
    a_d, f_d = a[dec], fin[dec]
    size = D_end + 2
    f_cl = np.minimum(f_d, D_end + 1)
    batch = np.cumsum(
        np.bincount(a_d + 1, minlength=size)[:size] - np.bincount(f_cl + 1, minlength=size + 1)[:size]
    )
    w = (I[dec] + 1 - a_d).astype(np.float64)
    wsum = np.cumsum(
        np.bincount(a_d + 1, weights=w, minlength=size)[:size]
        - np.bincount(f_cl, weights=w, minlength=size + 1)[:size]
    )
    alive = np.cumsum(
        np.bincount(a_d + 1, minlength=size)[:size] - np.bincount(f_cl, minlength=size + 1)[:size]
    )
    dd = np.arange(size)
    kv_dec = np.rint(wsum + dd * alive).astype(np.int64)  # kv_dec[0] = 0 (nothing decoded yet)

    # prefill j: KV after = kv_dec(c_j) + what prefills at the same clock (<= j) admitted and kept
    keep = (I + 1) * dec
    add = np.bincount(pf_idx, weights=keep.astype(np.float64), minlength=n_pf) if n_pf else np.zeros(0)
    cum = np.cumsum(add)
    first = np.searchsorted(pf_clock, pf_clock, side="left")
    before = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    kv_pf = kv_dec[pf_clock] + np.rint(cum - before).astype(np.int64)
    pf_tokens = np.bincount(pf_idx, weights=I.astype(np.float64), minlength=n_pf).astype(np.int64)

    kv = np.empty(S, dtype=np.int64)
    bs = np.empty(S, dtype=np.int64)
    tok = np.empty(S, dtype=np.int64)
    kv[is_prefill], kv[~is_prefill] = kv_pf, kv_dec[1 : D_end + 1]
    bs[is_prefill], bs[~is_prefill] = pf_n, batch[1 : D_end + 1]
    tok[is_prefill], tok[~is_prefill] = pf_tokens, batch[1 : D_end + 1]
    dur = np.where(is_prefill, timing.alpha_p + timing.beta_p * tok, timing.alpha_d + timing.beta_d * bs)

    # request step indices
    admit_step = g_pf[pf_idx]
    done = fin <= D_end
    dec_fin_step = fin - 1 + np.searchsorted(pf_clock, fin - 1, side="right")
    finish_step = np.where(done, np.where(dec, dec_fin_step, admit_step), -1)
    generated = np.where(done, L, np.minimum(L, 1 + D_end - a))

    # k column
    kcol = np.full(S, int(k0), dtype=np.int64)
    for g, kk in k_changes:
        kcol[g + 1 :] = kk
    cols = {
        "step": np.arange(S, dtype=np.int64),
        "is_prefill": is_prefill,
        "batch_size": bs,
        "tokens": tok,
        "kv_tokens": kv,
        "kv_bytes": (kv * float(kv_bytes_per_token)) if kv_bytes_per_token else np.full(S, np.nan),
        "duration_s": dur,
        "k": kcol,
    }
    fin_counts = np.bincount(finish_step[done], minlength=S)[:S] if S else np.zeros(0, np.int64)
    cols["finished_count"] = fin_counts
    if record_ids:
        ids = np.nonzero(done)[0]
        order = np.argsort(finish_step[ids], kind="stable")
        cols["finished"] = RaggedIds(ids[order], np.concatenate([[0], np.cumsum(fin_counts)]), labels)
        adm_counts = np.zeros(S, dtype=np.int64)
        adm_counts[g_pf] = pf_n
        cols["admitted"] = RaggedIds(np.arange(n_adm), np.concatenate([[0], np.cumsum(adm_counts)]), labels)
    reqs = {
        "input_len": I,
        "output_len": L,
        "admit_step": admit_step,
        "finish_step": finish_step,
        "generated": generated,
    }
    return cols, reqs
