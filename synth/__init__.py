"""synth: everything before training: clean scans, annotation icons, rendering, shards."""

__version__ = "0.1.0"
