"""The run report for monitoring (--report-json, --report-prom) and the validation shares it
compares with, stored in the model file's header."""

import json
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from mlbert.batch.cli import cli
from mlbert.errors import ModelFileError
from mlbert.modelfile import ModelHeader, ValidationShares
from mlbert.preprocess import Preprocessing
from mlbert.batch.run_report import PSI_BOUND, Tally, error_kind, label_rows, prometheus_text, psi
from test_batch_cli import KILLER, LABELS, TEXTS, _python, _write, records, run

BAD_ROWS = (
    '{"id": 1, "text": "i am so happy today !"}\n'
    '{"id": 2, "text": "   "}\n'
    '{"id": 3, "body": "no text field"}\n'
    '{"id": 4, "text": null}\n'
    '{"id": 5, "text": ["a", "list"]}\n'
    '{not json}\n'
    '["not", "an", "object"]\n'
)


def _report(tmp_path, args, model, name="report.json"):
    path = tmp_path / name
    result = run([*args, "--report-json", str(path)], model)
    return result, json.loads(path.read_text())


def test_report_counts_rows_errors_by_kind_and_positive_shares(tmp_path, golden_model):
    source = tmp_path / "in.jsonl"
    source.write_text(BAD_ROWS + "".join(json.dumps({"id": 10 + i, "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    result, report = _report(tmp_path, [str(source), "-o", str(tmp_path / "out.jsonl")], golden_model)
    assert result.exit_code == 3
    assert (report["status"], report["exit_code"], report["error"]) == ("row_errors", 3, None)
    assert (report["rows"], report["rows_scored"], report["error_rows"]) == (7 + len(TEXTS), 1 + len(TEXTS), 6)
    assert report["error_rows_by_kind"] == {"empty_text": 1, "malformed_json": 1, "missing_field": 1,
                                            "not_an_object": 1, "not_text": 1, "null_text": 1}
    assert report["provider"] == "CPUExecutionProvider" and report["seconds"] > 0 and report["rows_per_second"] > 0
    assert report["model"]["size"] == golden_model.stat().st_size and len(report["model"]["sha256"]) == 64
    # Per label: the share of scored rows whose labels include it, as the records say.
    recs = [r for r in records((tmp_path / "out.jsonl").read_text()) if "labels" in r]
    for row in report["labels"]:
        positives = sum(row["name"] in r["labels"] for r in recs)
        assert row["positive_rows"] == positives and row["positive_share"] == pytest.approx(positives / len(recs))
        assert (row["validation_share"], row["psi"], row["drift"]) == (None, None, None)  # the golden file has none
    assert [r["name"] for r in report["labels"]] == LABELS
    assert report["drift"]["checked"] is False and report["drift"]["bound"] == PSI_BOUND


def test_every_row_error_the_runtime_writes_has_a_kind():
    messages = ["empty text", "no 'text' field", "'text' is null", "'text' is not text (a JSON list)",
                "malformed JSON (Expecting value at column 1)", "a JSON line must be an object, not list",
                "malformed CSV row (line contains NUL)", "expected 2 fields, found 3",
                "bytes that are not UTF-8 (at byte 3 of the line)", "unreadable row"]
    kinds = {error_kind(m) for m in messages}
    assert "other" not in kinds and len(kinds) == len(messages)
    assert error_kind("something new") == "other"


def test_csv_row_errors_are_counted_by_kind(tmp_path, golden_model):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,text\n1,fine text\n2,too,many\n3,caf\xe9\n4,\n")
    result, report = _report(tmp_path, [str(source)], golden_model)
    assert result.exit_code == 3
    assert report["error_rows_by_kind"] == {"empty_text": 1, "invalid_utf8": 1, "wrong_field_count": 1}


def test_a_failed_run_still_writes_its_report(tmp_path, golden_model):
    missing = tmp_path / "missing.csv"
    result, report = _report(tmp_path, [str(missing), "-o", str(tmp_path / "out.jsonl")], golden_model)
    assert result.exit_code == 1
    assert (report["status"], report["exit_code"]) == ("failed", 1)
    assert report["error"] == f"{missing}: no such file" and report["rows"] == 0
    result = run([str(missing), "--report-json", str(tmp_path / "no" / "such" / "folder.json")], golden_model)
    assert result.exit_code == 1 and "cannot write the run report" in result.stderr and "does not exist" in result.stderr
    # Today's parts have not arrived: the glob matches nothing; nothing to do (exit 0), and monitoring hears of it.
    result, report = _report(tmp_path, [str(tmp_path / "day" / "*.parquet"), "-o", f"{tmp_path}/out/"], golden_model)
    assert result.exit_code == 0 and (report["status"], report["exit_code"]) == ("nothing_to_do", 0)
    assert report["files"]["total"] == 0 and report["rows"] == 0 and report["labels"] == []


def test_the_report_of_a_resumed_run_covers_every_row(tmp_path, golden_model):
    texts = [TEXTS[(i * 7) % len(TEXTS)] for i in range(60)] + [""]
    source = _write(tmp_path / "in.csv", "csv", texts)
    common = ["--chunk-size", "10", "--threads", "1", "--device", "cpu"]
    _, whole = _report(tmp_path, [str(source), "-o", str(tmp_path / "whole.jsonl"), *common], golden_model, "whole.json")
    out = tmp_path / "out.jsonl"
    killed = _python(["-c", KILLER, str(source), str(out), str(golden_model), "10", "3", "0"], tmp_path)
    assert killed.returncode == -signal.SIGKILL
    result = CliRunner().invoke(cli, [str(source), "-o", str(out), "-m", str(golden_model), *common, "--resume",
                                      "--report-json", str(tmp_path / "resumed.json")], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert resumed["resumed_after_row"] == 30
    for key in ("rows", "rows_scored", "error_rows", "error_rows_by_kind", "labels"):
        assert resumed[key] == whole[key], key


def test_an_inbox_report_sums_its_files(tmp_path, golden_model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _write(inbox / "a.csv", "csv", TEXTS)
    _write(inbox / "b.jsonl", "jsonl", TEXTS[:2] + ["  "])
    result, report = _report(tmp_path, [str(inbox), "-o", f"{tmp_path / 'out'}/"], golden_model)
    assert result.exit_code == 3
    assert report["files"] == {"total": 2, "written": 2, "skipped_as_done": 0, "failed": 0, "locked": 0}
    assert (report["rows"], report["error_rows"], report["error_rows_by_kind"]) == (len(TEXTS) + 3, 1, {"empty_text": 1})
    assert sum(r["positive_rows"] for r in report["labels"]) > 0


def test_prometheus_text_has_one_sample_per_gauge_and_label(tmp_path, golden_model):
    source = _write(tmp_path / "in.csv", "csv", TEXTS + [""])
    prom = tmp_path / "mlb.prom"
    result = run([str(source), "-o", str(tmp_path / "out.jsonl"), "--report-prom", str(prom)], golden_model)
    assert result.exit_code == 3
    samples = {}
    for line in prom.read_text().splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    run_labels = f'job="out.jsonl",input="{source}"'  # the job defaults to the output's name
    assert samples[f"mlb_batch_rows{{{run_labels}}}"] == len(TEXTS) + 1
    assert samples[f"mlb_batch_success{{{run_labels}}}"] == 1
    assert samples[f'mlb_batch_error_rows{{kind="empty_text",{run_labels}}}'] == 1
    assert {f'mlb_batch_label_positive_share{{label="{n}",{run_labels}}}' for n in LABELS} <= set(samples)
    assert not any(name.startswith("mlb_batch_label_drift") for name in samples)  # no validation shares: no flag
    assert not (tmp_path / "mlb.prom.tmp").exists()


def test_psi_and_the_drift_flag():
    assert psi(0.1, 0.1) == 0.0
    assert psi(0.1, 0.12) < 0.01 < psi(0.1, 0.2) < PSI_BOUND < psi(0.1, 0.3)
    assert np.isfinite(psi(0.05, 0.0)) and psi(0.05, 0.0) > PSI_BOUND
    validation = ValidationShares(rows=1000, predicted=[0.1, 0.1, 0.5])
    tally = Tally(positives=[11, 30, 50], scored=100)
    rows = label_rows(["a", "b", "c"], [0.5, 0.5, 0.3], [0.5, 0.5, 0.5], tally, validation)
    assert [r["drift"] for r in rows] == [False, True, None]  # c's threshold was overridden: nothing to compare
    assert rows[1]["validation_share"] == 0.1 and rows[2]["validation_share"] is None
    few = label_rows(["a", "b", "c"], [0.5] * 3, [0.5] * 3, Tally([1, 9, 5], 10), validation)
    assert [r["drift"] for r in few] == [None, None, None]  # too few rows to call it
    text = prometheus_text({"exit_code": 0, "rows": 1, "error_rows_by_kind": {}, "seconds": 1.0,
                            "rows_per_second": 1.0, "provider": "p", "model": None, "labels": rows})
    assert 'mlb_batch_label_drift{label="b",job="",input=""} 1' in text
    assert 'mlb_batch_label_psi{label="a",job="",input=""}' in text


def _header(**extra):
    return ModelHeader(label_names=["a", "b"], thresholds=[0.5, 0.4], preprocessing=Preprocessing(), max_length=16,
                       tokenizer_json="{}", input_names=["input_ids"], **extra)


def test_validation_shares_round_trip_and_files_without_them_stay_readable():
    shares = ValidationShares(rows=500, predicted=[0.2, 0.05], labelled=[0.25, 0.04])
    header = _header(validation_shares=shares)
    back = ModelHeader.from_metadata(header.to_metadata())
    assert back.validation_shares == shares
    plain = ModelHeader.from_metadata(_header().to_metadata())
    assert plain.validation_shares is None and "validation_shares" not in json.loads(_header().to_metadata()["mlb"])
    data = json.loads(header.to_metadata()["mlb"])
    data["validation_shares"]["predicted_positive"] = [0.2]
    with pytest.raises(ModelFileError, match="validation_shares.predicted_positive must hold one share"):
        ModelHeader.from_metadata({"mlb": json.dumps(data)})
