"""report.html of an explain run and of a leaderboard: self-contained, one row per pair, sortable, filterable.

The browser tests load the report written by ``explain.py`` in headless Chromium (Debian's
``chromium`` and ``chromium-driver``, driven by selenium) and read the rendered table; they skip when
either is missing (``make install`` installs them where apt-get runs as root).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scout_exp.report import write_run_report
from scout_exp.sweeps.__main__ import main as sweeps_main
from tests.conftest import run_dir, run_entry
from tests.reliability_helpers import tiny_checkpoint

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DATA = ("data.num_identities=4", "data.images_per_identity=12", "data.image_size=96")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An explain run of 3 FaceParts pairs on an untrained tiny checkpoint, written by explain.py."""
    log_dir = tmp_path_factory.mktemp("logs")
    ckpt = tiny_checkpoint(log_dir / "tiny.ckpt")
    result = run_entry(
        "explain.py", f"ckpt_path={ckpt}", *DATA, "max_pairs=3", "metrics=[parts]", "logger=none", cwd=log_dir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir(log_dir, "explain")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium under selenium, with Debian's binaries (selenium never downloads a driver)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver (make install does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _column(driver: object, table: str, col: int) -> list[str]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")  # type: ignore[attr-defined]
    return [r.find_elements(By.TAG_NAME, "td")[col].text for r in rows if r.is_displayed()]


def test_report_is_self_contained(run: Path) -> None:
    record = json.loads((run / "explanations.json").read_text())
    html = (run / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # no CDN, no server
    pair_figures = [p["figure"] for p in record["pairs"] if "figure" in p]
    assert html.count('src="data:image/jpeg;base64,') == len(record["figures"]) >= len(pair_figures) == 3
    for figure in record["figures"]:
        assert f'href="{figure}"' in html and (run / figure).is_file()
    summary = record["summary"]
    assert "chance: random map" in html and "chance: whole face" in html
    low, high = summary["chance_face_precision_ci"]
    assert f"[{low:.3f}, {high:.3f}]" in html  # the chance row's CI, beside the run's own


def test_report_table_in_chromium_has_a_row_per_pair_and_sorts(run: Path, browser: object) -> None:
    from selenium.webdriver.common.by import By

    record = json.loads((run / "explanations.json").read_text())
    pairs = [p["pair"] for p in record["pairs"]]
    browser.get((run / "report.html").as_uri())  # type: ignore[attr-defined]
    assert _column(browser, "pairs", 0) == pairs
    header = browser.find_element(By.CSS_SELECTOR, '#pairs th[data-col="0"]')  # type: ignore[attr-defined]
    header.click()
    assert _column(browser, "pairs", 0) == sorted(pairs)
    header.click()
    assert _column(browser, "pairs", 0) == sorted(pairs, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    # a numeric column sorts by value: k (the number of differing parts)
    k_col = int(browser.find_element(By.XPATH, '//table[@id="pairs"]//th[text()="k"]').get_attribute("data-col"))  # type: ignore[attr-defined]
    browser.find_element(By.CSS_SELECTOR, f'#pairs th[data-col="{k_col}"]').click()  # type: ignore[attr-defined]
    ks = [int(v) for v in _column(browser, "pairs", k_col)]
    assert ks == sorted(p["k"] for p in record["pairs"])
    # the filter keeps the rows whose score lies in [min, max]
    select = browser.find_element(By.CSS_SELECTOR, "#filter select")  # type: ignore[attr-defined]
    select.find_element(By.CSS_SELECTOR, f'option[value="{k_col}"]').click()
    browser.find_element(By.CSS_SELECTOR, '#filter [name="min"]').send_keys(str(max(ks)))  # type: ignore[attr-defined]
    assert len(_column(browser, "pairs", 0)) == ks.count(max(ks))
    shown = browser.find_element(By.CSS_SELECTOR, "#filter output").text  # type: ignore[attr-defined]
    assert shown == f"{ks.count(max(ks))} of {len(pairs)} rows shown"


def test_leaderboard_report_links_each_run(run: Path, browser: object) -> None:
    from selenium.webdriver.common.by import By

    root = run.parent
    assert sweeps_main(["leaderboard", str(root), "--metric", "recall"]) == 0
    browser.get((root / "report.html").as_uri())  # type: ignore[attr-defined]
    names = _column(browser, "board", 0)
    assert "gradxact / a_abar_as / softmax / layer4" in names and "chance: whole face" in names
    link = browser.find_element(By.LINK_TEXT, "report")  # type: ignore[attr-defined]
    assert link.get_attribute("href") == (run / "report.html").as_uri()
    browser.find_element(By.CSS_SELECTOR, '#board th[data-col="0"]').click()  # type: ignore[attr-defined]
    assert _column(browser, "board", 0) == sorted(names)


def test_verify_records_render(tmp_path: Path) -> None:
    """mode=verify's records (cosine, distance, evidence shares) fill the same table."""
    side = {"similar_mass": 1.0, "different_mass": 0.5, "similar_share": 0.667, "degenerate": False}
    records = [
        {"pair": f"p{i}", "cosine": 0.1 * i, "distance": 1 - 0.1 * i, "image_1": side, "image_2": side}
        for i in range(2)
    ]
    header = {"summary": {"mode": "verify", "attribution": "gradxact", "pairs": 2}, "figures": []}
    html = write_run_report(tmp_path, header, records).read_text()
    assert html.count("<tr><td") == 2 and ">cosine<" in html and "similar share" in html
