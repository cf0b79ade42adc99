"""Workloads for the experiments: real datasets tokenized with the model's tokenizer, public
length traces, and the synthetic geometric workload.

    load_workload({"dataset": "alpaca", "tokenizer": "qwen3", "num_requests": 1000, "seed": 0})
    workload_stats(wl) -> {"count", "input_mean", "output_mean", "output_p95", "p", ...}
    DATASETS -> {name: DatasetInfo(kind, hub_id, local, splits, note)}
"""
from .errors import BadRecord, DataError, HubUnavailable
from .load import load_workload
from .spec import DATASETS, DatasetInfo, DatasetSpec, resolve_data_dir
from .stats import workload_stats
from .tokenizer import load_tokenizer

__all__ = ["DATASETS", "BadRecord", "DataError", "DatasetInfo", "DatasetSpec", "HubUnavailable",
           "load_tokenizer", "load_workload", "resolve_data_dir", "workload_stats"]
