"""docs/python-api.md shows the library used from Python: its code block runs as written (issue 25)."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_the_python_api_page_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(blocks[0], str(DOC), "exec"), {"__name__": "python_api_doc"})
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("case_0002 ")
    assert [line.split()[0] for line in lines[1:]] == ["saliency", "gradcam"]
    assert (tmp_path / "work" / "heatmaps" / "case_0002" / "saliency.nii.gz").is_file()
