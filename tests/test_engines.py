"""The engine protocol and the one profiling grid (``pdlib.engines.base``)."""
from __future__ import annotations

import pytest

from pdlib import theory
from pdlib.engines import ENGINES, get_engine
from pdlib.engines.base import Engine, ProfileGrid

T = theory.TimingModel(alpha_p=0.5, beta_p=0.01, alpha_d=0.1, beta_d=0.02)


def test_profile_grid_resolves_yaml_keywords():
    default = ProfileGrid(prefill_tokens=(16,), decode_batches=(1, 2), context_lens=(8,), repeats=2)
    g, rest = ProfileGrid.resolve(None, default, {"decode_batches": [4, 8], "noise": 0.1})
    assert g == ProfileGrid((16,), (4, 8), (8,), 2) and rest == {"noise": 0.1}
    assert ProfileGrid.resolve(g, default, {})[0] is not default
    with pytest.raises(ValueError, match="decode_batches"):
        ProfileGrid(decode_batches=[])
    with pytest.raises(ValueError, match="repeats"):
        ProfileGrid(repeats=0)


def test_sim_engine_follows_the_protocol_and_takes_a_grid():
    eng = get_engine("sim", timing=T)
    assert isinstance(eng, Engine) and eng.describe()["engine"] == "sim"
    grid = ProfileGrid(prefill_tokens=(16, 64), decode_batches=(1, 4), context_lens=(32,), repeats=2)
    a, b = eng.profile(grid), eng.profile(**vars(grid))
    assert a.to_dict() == b.to_dict() and {r["batch"] for r in a.decode} == {1, 4} and len(a.prefill) == 4
    assert set(ENGINES) == {"sim", "native", "vllm"}
