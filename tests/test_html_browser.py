"""report.html in a real browser: Debian's Chromium, headless, driven by selenium (WebDriver).

The report is made by `harness.py nightly`'s own code (compare with the previous run, plots,
reporters) from the results of real nightly runs (tests/data/nightly: a clean run, then the run
with the armv7 regression); the browser must load it without console errors, load every plot, and
show the grid's counts, the one regressed cell and logs that open."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from crlab.workflows.nightly import compare_with_previous
from tests.test_compare import GOLDEN, golden_store

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT_DIR = Path(os.environ.get("CRLAB_SCREENSHOT_DIR", "/tmp"))


def _driver():  # type: ignore[no-untyped-def]
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        why = "Debian's chromium and chromium-driver are needed (harness.py selftest installs them)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1800", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the Debian driver, named explicitly: selenium must not try to download one
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def test_report_opens_in_headless_chromium(tmp_path: Path) -> None:
    store, runs = golden_store(tmp_path, ("run1", "run2"))
    regression = runs[1]
    for job_dir in (GOLDEN / "run2-logs").iterdir():  # the real console and suite logs of run 2
        shutil.copytree(job_dir, regression.dir / job_dir.name, dirs_exist_ok=True)
    outcome = compare_with_previous(store, regression, known=None)
    assert outcome.comparison.exit_code() == 0
    report = regression.dir / "report.html"
    expected = json.loads((regression.dir / "results.json").read_text())["summary"]

    from selenium.webdriver.common.by import By

    driver = _driver()
    try:
        driver.get(report.as_uri())
        assert driver.title == f"crlab run {regression.run_id}"
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == []
        # the grid: one status badge per job, counted by status, and the counts line agrees
        statuses = [e.get_attribute("data-status") for e in driver.find_elements(By.CSS_SELECTOR, "table.grid .st")]
        assert len(statuses) == expected["jobs"] == 5
        assert statuses.count("pass") == expected["pass"] == 5
        counts = {e.get_attribute("data-status"): int(e.get_attribute("data-count") or -1)
                  for e in driver.find_elements(By.CSS_SELECTOR, "#grid-counts .count")}
        assert counts == {"pass": 5}
        colour = driver.find_element(By.CSS_SELECTOR, "table.grid .job.pass").value_of_css_property(
            "background-color")
        assert colour == "rgba(200, 240, 200, 1)"
        assert driver.find_elements(By.CSS_SELECTOR, "table.grid .st[data-change]") == []
        assert "previous run" in driver.find_element(By.ID, "comparison").find_element(By.XPATH, "..").text
        # both plots are drawn (matplotlib SVGs, loaded as images)
        sizes = driver.execute_script(
            "return Array.from(document.querySelectorAll('.plots img'))"
            ".map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert sorted(s[0] for s in sizes) == ["plots/boot_s.svg", "plots/build_s.svg"]
        assert all(complete and width > 100 for _src, complete, width in sizes), sizes
        shot = SCREENSHOT_DIR / "crlab-report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # every cell links to its console log; armv7's opens and is the guest's console
        consoles = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "table.grid .links a")
                    if a.text == "console.log"]
        assert len(consoles) == 5
        for href in consoles:
            assert Path(unquote(urlparse(href).path)).is_file(), href
        driver.get(next(h for h in consoles if "armv7" in h))
        assert "Linux version" in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
