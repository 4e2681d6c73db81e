"""``mlb-batch``: classify files with an exported mlb ONNX model, from the command line or cron.

Only the batch job lives here: the command (``cli``), the job's options and shared helpers
(``job``), the local engine (``pipeline``), inboxes of many files (``inbox``), the run report
(``run_report``), the settings fingerprint (``fingerprint``) and the Ray engine (``ray/``).
The model runtime and the file formats it builds on are the lean core in ``mlbert.runtime``
and ``mlbert.io``; like them, this package never imports torch or transformers.
"""

from mlbert import __version__

__all__ = ["__version__"]
