"""train: everything after synthesis: streaming shards, models, training loop, evaluation, inference."""

__version__ = "0.2.0"
