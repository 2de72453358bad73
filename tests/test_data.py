"""matryo_fast.data: TSV/CSV/JSONL readers and their error messages (no torch needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from matryo_fast.data import DataError, detect_format, parse_scores, read_sts, read_table

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def rejected(path: Path, text: str | bytes, match: str, **read: Any) -> None:
    """Writes ``text`` to ``path`` and checks that ``read_table`` refuses it with ``match``."""
    write(path, text)
    with pytest.raises(DataError, match=match):
        read_table(path, **read)


def test_tsv_is_unquoted(tmp_path: Path) -> None:
    p = write(tmp_path / "a.tsv", 'anchor\tpositive\n"quoted" start\tit\'s "fine"\nx\ty\n')
    t = read_table(p)
    assert t == {"anchor": ['"quoted" start', "x"], "positive": ['it\'s "fine"', "y"]}


def test_csv_is_quoted_and_jsonl(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", 'sentence1,sentence2,score\n"a, b",c,1.5\nd,"e ""q""",2\n')
    assert read_table(p) == {
        "sentence1": ["a, b", "d"],
        "sentence2": ["c", 'e "q"'],
        "score": ["1.5", "2"],
    }
    rows = [{"anchor": "a", "positive": "b"}, {"anchor": "c", "positive": "d"}]
    j = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_table(j) == {"anchor": ["a", "c"], "positive": ["b", "d"]}


def test_columns_select_and_order(tmp_path: Path) -> None:
    p = write(tmp_path / "t.tsv", "source\tpositive\tanchor\ns\tp\ta\n")
    assert read_table(p, columns=["anchor", "positive"], allow_extra=True) == {
        "anchor": ["a"],
        "positive": ["p"],
    }


def test_blank_lines_crlf_and_bom_are_tolerated(tmp_path: Path) -> None:
    p = write(tmp_path / "t.tsv", b"\xef\xbb\xbfa\tb\r\n1\t2\r\n\r\n3\t4\r\n")
    assert read_table(p) == {"a": ["1", "3"], "b": ["2", "4"]}


def test_detect_format() -> None:
    assert detect_format("x.TSV") == "tsv"
    assert detect_format("x.ndjson") == "jsonl"
    with pytest.raises(DataError, match=r"x\.txt: unsupported file type '\.txt'"):
        detect_format("x.txt")
    with pytest.raises(DataError, match=r"unsupported file type '\(no suffix\)'"):
        detect_format("noext")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data file not found: .*nope.tsv"):
        read_table(tmp_path / "nope.tsv")


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "d.tsv"
    d.mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_table(d)


@pytest.mark.parametrize("suffix", ["tsv", "csv", "jsonl"])
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    rejected(tmp_path / f"e.{suffix}", "\n\n", rf"e\.{suffix}: file is empty")


def test_header_only(tmp_path: Path) -> None:
    rejected(tmp_path / "h.tsv", "a\tb\n", r"h\.tsv: has a header but no data rows")


TRIPLET = ["anchor", "positive", "negative"]


def test_missing_column(tmp_path: Path) -> None:
    missing = r"m\.tsv: missing column\(s\) \['negative'\]; the header has \['anchor', 'positive'\]"
    rejected(tmp_path / "m.tsv", "anchor\tpositive\na\tb\n", missing, columns=TRIPLET)


def test_extra_column(tmp_path: Path) -> None:
    extra = r"x\.tsv: unexpected extra column\(s\) \['source'\]"
    rejected(tmp_path / "x.tsv", "anchor\tpositive\tsource\na\tb\tc\n", extra, columns=["anchor", "positive"])


def test_duplicate_and_empty_header(tmp_path: Path) -> None:
    header = r"\.tsv, line 1 \(header\): "
    rejected(tmp_path / "d.tsv", "a\ta\n1\t2\n", "d" + header + r"duplicate column name\(s\) \['a'\]")
    rejected(tmp_path / "e.tsv", "a\t\n1\t2\n", "e" + header + "empty column name")


def test_row_with_wrong_field_count(tmp_path: Path) -> None:
    fields = re.escape("r.tsv, row 2 (line 3): expected 2 fields ['a', 'b'], got 3 (a tab")
    rejected(tmp_path / "r.tsv", "a\tb\n1\t2\n3\t4\t5\n", fields)
    rejected(tmp_path / "r.csv", "a,b\n1\n", re.escape("r.csv, row 1 (line 2): expected 2 fields"))


def test_unreadable_csv_row(tmp_path: Path) -> None:
    rejected(tmp_path / "q.csv", 'a,b\n1,2\n"x"y,3\n', r"q\.csv, row 2 \(line 3\): unreadable row")


def test_invalid_utf8(tmp_path: Path) -> None:
    rejected(tmp_path / "u.tsv", b"a\tb\n1\t2\n\xff\xfe\t3\n", r"u\.tsv, line 3: not valid UTF-8")


def test_jsonl_errors(tmp_path: Path) -> None:
    at = r"\.jsonl, row 2 \(line {}\): "
    rejected(tmp_path / "b.jsonl", '{"a": 1}\n{"a": \n', "b" + at.format(2) + "not valid JSON")
    not_object = "c" + at.format(2) + "expected a JSON object, got list"
    rejected(tmp_path / "c.jsonl", '{"a": 1}\n[1, 2]\n', not_object)
    missing = "d" + at.format(3) + r"missing key\(s\) \['b'\]"
    rejected(tmp_path / "d.jsonl", '{"a": 1, "b": 2}\n\n{"a": 3}\n', missing)
    extra = "e" + at.format(2) + r"unexpected extra key\(s\) \['z'\]"
    rejected(tmp_path / "e.jsonl", '{"a": 1}\n{"a": 3, "z": 0}\n', extra)
    assert read_table(tmp_path / "e.jsonl", columns=["a"], allow_extra=True) == {"a": [1, 3]}


def test_parse_scores() -> None:
    assert parse_scores(["1", 2, "2.5"], source="f", column="score") == [1.0, 2.0, 2.5]
    with pytest.raises(DataError, match=r"f, row 2: column 'score' must be a number, got 'high'"):
        parse_scores(["1", "high"], source="f", column="score")
    with pytest.raises(DataError, match=r"f, row 1: column 'score' must be finite, got 'nan'"):
        parse_scores(["nan"], source="f", column="score")
    with pytest.raises(DataError, match="must be a number, got True"):
        parse_scores([True], source="f", column="score")


def test_read_sts(tmp_path: Path) -> None:
    p = write(tmp_path / "s.tsv", "sentence1\tsentence2\tscore\textra\na\tb\t1.0\tz\nc\td\t4\tz\n")
    assert read_sts(p) == (["a", "c"], ["b", "d"], [1.0, 4.0])
    bad = write(tmp_path / "bad.tsv", "sentence1\tsentence2\tscore\na\tb\t1\nc\td\t?\n")
    with pytest.raises(DataError, match=r"bad\.tsv, row 2: column 'score' must be a number"):
        read_sts(bad)
    one = write(tmp_path / "one.tsv", "sentence1\tsentence2\tscore\na\tb\t1\n")
    with pytest.raises(DataError, match=r"one\.tsv: needs at least 2 scored pairs, got 1"):
        read_sts(one)
    with pytest.raises(ValueError, match="columns must name"):
        read_sts(p, columns=("a", "b"))


@pytest.mark.skipif(not (SHARED / "stsb" / "test.tsv").is_file(), reason="shared data not present")
def test_shared_files_read_completely() -> None:
    s1, s2, gold = read_sts(SHARED / "stsb" / "test.tsv")
    assert len(s1) == len(s2) == len(gold) == 1379
    assert min(gold) >= 0 and max(gold) <= 5
    t = read_table(
        SHARED / "nli" / "triplets.tsv",
        columns=["anchor", "positive", "negative"],
        allow_extra=True,
    )
    assert len(t["anchor"]) == 13136


def test_to_dataset() -> None:
    pytest.importorskip("datasets")
    from matryo_fast.data import to_dataset

    ds = to_dataset({"a": ["x", "y"], "b": ["1", "2"]})
    assert ds.column_names == ["a", "b"] and len(ds) == 2
