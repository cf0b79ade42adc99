"""Models: the architecture table and specs (``specs``) and the one Hugging Face loader (``hf``)."""
from .hf import (
                 ARCHITECTURES,
                 TINY_QWEN3,
                 build_causal_lm,
                 load_hf_config,
                 materialize_config,
                 materialize_model,
                 save_random_qwen3,
                 torch_dtype,
)
from .specs import (
                 ANALYTIC_TYPES,
                 MODELS_YAML,
                 ModelSpec,
                 builtin_models,
                 count_parameters,
                 count_parameters_transformers,
                 get_model,
                 load_config_path,
                 model_names,
                 model_table,
)

__all__ = ["ANALYTIC_TYPES", "ARCHITECTURES", "MODELS_YAML", "TINY_QWEN3", "ModelSpec", "build_causal_lm",
           "builtin_models", "count_parameters", "count_parameters_transformers", "get_model",
           "load_config_path", "load_hf_config", "materialize_config", "materialize_model", "model_names",
           "model_table", "save_random_qwen3", "torch_dtype"]
