"""Compatibility path: ``Preprocessing`` lives in ``mlbert.preprocess``.

Model cards written by mlbert 0.2 print ``from mlbert.batch.preprocess import Preprocessing``;
this module keeps that line working. New code imports ``mlbert.preprocess``.
"""

from mlbert.preprocess import Preprocessing

__all__ = ["Preprocessing"]
