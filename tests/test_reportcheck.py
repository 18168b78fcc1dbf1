"""``python -m steerlab.reportcheck`` refuses what is not an HTML page, before any browser runs
(a WAV loaded in Chromium showed as a page with nothing on it: "0 images, 0 SVGs, 0 audio
players: OK")."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from steerlab.errors import OutputError
from steerlab.reportcheck import check_report, main, read_page, screenshot


def test_a_file_that_is_not_an_html_page_fails_with_one_line(tmp_path, capsys):
    wav, data, page = tmp_path / "some.wav", tmp_path / "run.json", tmp_path / "report.html"
    sf.write(wav, np.zeros(2400, np.float32), 24_000, subtype="FLOAT")
    data.write_text('{"html": "<html>"}')
    page.write_text("\ufeff<!-- made by hand -->\n<!DOCTYPE html><html><body>hi</body></html>")
    assert read_page(page).startswith("<!-- made by hand -->")
    for bad in (wav, data):
        for call in (lambda p: check_report(p, browser="/nonexistent"), lambda p: screenshot(p, tmp_path / "s.png")):
            with pytest.raises(OutputError, match=r"is not an HTML page \(a report opens with <!doctype html>\)"):
                call(bad)
        assert main([str(bad)]) == 2
        err = capsys.readouterr()
        assert (
            err.out == ""
            and err.err
            == f"Error: {str(bad)!r} is not an HTML page (a report opens with "
            "<!doctype html>); give a report's .html file\n"
        )
    assert not (tmp_path / "s.png").exists()
    assert main([str(page), "--window", "12x"]) == 2
    assert capsys.readouterr().err.startswith("Error: --window must be WIDTHxHEIGHT")
