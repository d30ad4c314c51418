"""Old import path of the ChatGLM3 checkpoint mapping and memory check, kept for users and tests:
see `composite.backends.chatglm3_checkpoint` and `composite.backends.weights`.
"""

from __future__ import annotations

from .backends.chatglm3_checkpoint import (
    CHATGLM3_6B_CONFIG,
    DEFAULT_MAX_SHARD_BYTES,
    checkpoint_problems,
    convert_chatglm3,
    convert_cli,
    glm_config_from_chatglm3,
    is_chatglm3_checkpoint,
    iter_checkpoint_tensors,
    load_chatglm3,
    map_chatglm3_state_dict,
    read_chatglm3_config,
)
from .backends.weights import GIB, MEMORY_HEADROOM, check_memory, estimate_weight_bytes, resolve_dtype

__all__ = [
    "CHATGLM3_6B_CONFIG",
    "DEFAULT_MAX_SHARD_BYTES",
    "GIB",
    "MEMORY_HEADROOM",
    "is_chatglm3_checkpoint",
    "checkpoint_problems",
    "read_chatglm3_config",
    "glm_config_from_chatglm3",
    "map_chatglm3_state_dict",
    "iter_checkpoint_tensors",
    "load_chatglm3",
    "convert_chatglm3",
    "convert_cli",
    "estimate_weight_bytes",
    "check_memory",
    "resolve_dtype",
]
