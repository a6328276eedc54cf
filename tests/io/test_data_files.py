"""One reader for the CSV, JSON and YAML files users and spreadsheets write: what it accepts and refuses."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml

from medxai.errors import InvalidInputError
from medxai.io.data_files import parse_yaml, read_data_file, read_table


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_a_spreadsheet_csv_reads_whatever_its_delimiter_bom_and_line_ending(tmp_path: Path, delimiter: str) -> None:
    rows = [["case_id", "image", "mask"], ["lésion 1", "images/a b.nii.gz", 'odd "x;y,z".nii.gz']]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)  # quotes what needs quoting
    path = tmp_path / "manifest.csv"
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    columns, table = read_table(path, what="manifest")
    assert columns == rows[0]
    assert table == [dict(zip(rows[0], rows[1]))]


def test_a_csv_that_is_not_utf8_is_one_clear_refusal(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("case_id;image\r\nlésion;a.nii.gz\r\n".encode("cp1252"))
    with pytest.raises(InvalidInputError, match="not UTF-8 text: save it as 'CSV UTF-8'") as error:
        read_table(path, what="manifest")
    assert error.value.path == str(path)


def test_deep_nesting_and_alias_bombs_are_refused_without_quoting(tmp_path: Path) -> None:
    with pytest.raises(yaml.YAMLError, match="nested too deeply"):
        parse_yaml("[" * 20000)
    bomb = "a: &a [x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(12))
    with pytest.raises(yaml.YAMLError, match="more than 16 aliases"):
        parse_yaml(bomb)
    secret = tmp_path / "shadow.json"
    secret.write_text('{"root": "$6$secret-hash" ' + "]" * 3)
    with pytest.raises(InvalidInputError) as error:
        read_data_file(secret, what="record")
    assert "secret-hash" not in str(error.value)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        read_data_file(deep, what="record")
