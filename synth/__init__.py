"""synth: everything before training: clean scans, annotation icons, rendering, shards."""

import os

# albumentations asks PyPI for its latest version when imported unless told not to. On an offline
# hospital machine that is a DNS timeout and a warning in every build worker. Set here, on the package's
# import, because the build's forkserver imports albumentations before any Augmenter is made.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.2.0"  # 0.2.0: rendering bit-identical on any x86-64 processor (synth/exactmath.py)
