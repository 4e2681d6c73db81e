"""mlb-train and mlb-eval: fine-tune a multi-label text classifier and score models on labelled data.

Heavy libraries (torch, transformers, datasets) are imported inside functions so that
``mlb-train --help`` and the data/metrics helpers stay fast.
"""

from mlbert import __version__

__all__ = ["__version__"]
