"""tasks/validation.py: the Great Expectations suite generated from the taxonomy, on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from progattr_core.config import ValidationParams
from tasks.validation import files_present, validate_manifest

pytestmark = pytest.mark.flows
VOCAB = {"fade": ("no-fade", "light-fade", "heavy-fade"), "shade": ("light", "dark")}
LIMITS = ValidationParams(min_label_coverage=0.5, min_label_coverage_by_attribute={}, min_class_count=1,
                          min_full_label_fraction=0.2)


def _manifest(root: Path, n: int = 12) -> pd.DataFrame:
    rows = []
    for i in range(n):
        path = f"raw/img{i}.png"
        (root / "raw").mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"png")
        rows.append({"image_id": f"id{i}", "path": path, "sha256": f"{i:064x}", "article": "jeans",
                     "fade": VOCAB["fade"][i % 3], "shade": VOCAB["shade"][i % 2] if i % 4 else None,
                     "split": "train" if i < 8 else "test"})
    return pd.DataFrame(rows)


def test_a_clean_manifest_passes_and_writes_reports(tmp_path):
    out = validate_manifest(_manifest(tmp_path), tmp_path, "jeans", VOCAB, LIMITS, tmp_path / "report")
    assert out.success, out.failures
    assert out.coverage == {"fade": 1.0, "shade": 0.75} and out.fully_labelled_fraction == 0.75
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["success"] is True
    assert (tmp_path / "report" / "data_docs" / "index.html").is_file()


def test_a_rerun_on_the_same_checked_content_reuses_the_report_and_any_other_change_runs_the_suite(tmp_path):
    df, memo = _manifest(tmp_path), tmp_path / "memo"
    first = validate_manifest(df, tmp_path, "jeans", VOCAB, LIMITS, tmp_path / "report", memo)
    assert first.success and not first.reused
    df.loc[5, "sha256"] = "f" * 64  # a re-shot image: the suite reads its hash and path only as present
    df.loc[5, "path"] = "raw/parts/p2/img5.png"  # (an import folder copies it into a new part)
    (tmp_path / "raw/parts/p2").mkdir(parents=True)
    (tmp_path / "raw/parts/p2/img5.png").write_bytes(b"png")
    again = validate_manifest(df, tmp_path, "jeans", VOCAB, LIMITS, tmp_path / "again", memo)
    assert again.reused and again.success and again.coverage == first.coverage
    assert again.report_dir == str(tmp_path / "again") and (tmp_path / "again" / "data_docs" / "index.html").is_file()
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["reused"] is True
    (tmp_path / df.loc[3, "path"]).unlink()  # a file gone: the suite runs again, and says so
    gone = validate_manifest(df, tmp_path, "jeans", VOCAB, LIMITS, tmp_path / "report", memo)
    assert not gone.reused and not gone.success and "id3" in "\n".join(gone.failures)
    same = validate_manifest(df, tmp_path, "jeans", VOCAB, LIMITS, tmp_path / "report", memo)
    assert same.reused and same.failures == gone.failures  # a failure is remembered as it was


@pytest.mark.parametrize("n", [3, 80])  # a few files are stat'ed one by one; a folder of many is listed once
def test_file_presence_follows_symlinks_and_refuses_folders(tmp_path, n):
    (tmp_path / "f").mkdir()
    for i in range(n):
        (tmp_path / f"f/{i}.png").write_bytes(b"png")
    (tmp_path / "f/dir.png").mkdir()
    (tmp_path / "f/link.png").symlink_to(tmp_path / "f/0.png")
    (tmp_path / "f/dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "f/1.png").unlink()
    paths = [*(f"f/{i}.png" for i in range(n)), "f/dir.png", "f/link.png", "f/dangling.png", None, "g/0.png"]
    assert files_present(tmp_path, paths) == [i != 1 for i in range(n)] + [False, True, False, False, False]


def test_each_failing_expectation_is_named_with_its_observed_value(tmp_path):
    df = _manifest(tmp_path)
    df.loc[1, "image_id"] = "id0"                 # duplicate id
    df.loc[2, "fade"] = "acid-wash"               # outside the vocabulary
    (tmp_path / df.loc[3, "path"]).unlink()       # missing image file
    df.loc[:, "shade"] = None                     # coverage 0 < 0.5, and the fully-labelled fraction 0
    out = validate_manifest(df, tmp_path, "jeans", VOCAB, LIMITS, tmp_path / "report")
    text = "\n".join(out.failures)
    assert not out.success
    assert "expect_column_values_to_be_unique(image_id)" in text and "'id0'" in text
    assert "expect_column_values_to_be_in_set(fade)" in text and "acid-wash" in text
    assert "expect_column_values_to_be_in_set(file_present)" in text and "id3" in text
    assert "expect_column_values_to_not_be_null(shade, mostly=0.5)" in text and "(100.0%)" in text
    assert "expect_column_mean_to_be_between(fully_labelled, min_value=0.2): observed 0.0" in text
    assert "expect_column_values_to_be_between(train_count, min_value=1.0)" in text and "shade=light" in text
    assert (tmp_path / "report" / "result.json").is_file()


def test_an_attribute_sparse_by_nature_has_its_own_coverage_floor(tmp_path):
    from dataclasses import replace

    df = _manifest(tmp_path)                      # shade labelled on 75% of the images
    strict = replace(LIMITS, min_label_coverage_by_attribute={"shade": 0.9})
    out = validate_manifest(df, tmp_path, "jeans", VOCAB, strict, tmp_path / "report")
    assert [f.split(":")[0] for f in out.failures] == ["expect_column_values_to_not_be_null(shade, mostly=0.9)"]
    lenient = replace(LIMITS, min_label_coverage=0.9, min_label_coverage_by_attribute={"shade": 0.7})
    assert validate_manifest(df, tmp_path, "jeans", VOCAB, lenient, tmp_path / "report").success


def test_missing_columns_are_named(tmp_path):
    df = _manifest(tmp_path).drop(columns=["sha256", "shade"])
    out = validate_manifest(df, tmp_path, "jeans", VOCAB, LIMITS, tmp_path / "report")
    assert any("expect_table_columns_to_match_set" in f and "sha256" in f and "shade" in f for f in out.failures)
