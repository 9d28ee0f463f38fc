"""Builders: architecture tables (``models/*.toml``) -> Keras models, a registry and a cost pass.

``registry`` and ``arch`` are light (no TensorFlow); ``keras_builder`` and ``cost`` import Keras.
"""

from edgecv.builders.registry import ModelConfig, config_for, create_model, get_config, list_models

__all__ = ["ModelConfig", "config_for", "create_model", "get_config", "list_models"]
