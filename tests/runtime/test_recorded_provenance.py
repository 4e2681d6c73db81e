"""What files record about when and from where they were made: reproducible, and no machine's folders.

The built-in model's rebuild (scripts/build_builtin_model.sh) compares the file it makes with the
shipped one byte for byte, which needs the recorded times to follow ``SOURCE_DATE_EPOCH`` and the
recorded paths to be the same on every clone.
"""

import os

import pytest

from mlbert.errors import ModelFileError
from mlbert.modelfile import portable_path, recorded_time


def test_recorded_time_follows_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796428800")
    assert recorded_time() == "2026-12-05T00:00:00Z"


def test_recorded_time_is_now_without_it(monkeypatch):
    from datetime import datetime, timezone

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    stamp = recorded_time()
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 60


def test_a_bad_source_date_epoch_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ModelFileError, match="SOURCE_DATE_EPOCH='yesterday'"):
        recorded_time()


def test_paths_inside_the_working_folder_are_recorded_relative(tmp_path, monkeypatch):
    (tmp_path / "runs" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert portable_path("runs/model") == os.path.join("runs", "model")
    assert portable_path(str(tmp_path / "runs" / "model")) == os.path.join("runs", "model")
    outside = str(tmp_path.parent)
    assert portable_path(outside) == outside
