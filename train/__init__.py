"""train: everything after synthesis: streaming shards, models, training loop, evaluation, inference."""

__version__ = "0.1.0"
