"""Headless Chromium for the report: Debian's ``chromium`` and ``chromium-driver``, driven by selenium.

Used by the browser tests (tests/test_report_browser.py), the report benchmark
(benchmarks/bench_report.py) and the screenshots (tools/report_screenshots.py).
``chromium()`` returns ``(driver, None)``, or ``(None, reason)`` when the browser, the
driver or selenium is missing, so that callers can skip with that reason.
"""
from __future__ import annotations

import json
import os
import shutil

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver", "chromium-driver")


def _which(names):
    for n in names:
        p = shutil.which(n) or (f"/usr/bin/{n}" if os.path.exists(f"/usr/bin/{n}") else None)
        if p:
            return p
    return None


def chromium(width=1400, height=900):
    """A headless Chromium with console and network logging, or ``(None, why not)``."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install selenium, or the dev extra)"
    browser, driver = _which(CHROMIUM), _which(DRIVER)
    if not browser or not driver:
        return None, "headless Chromium is missing (apt-get install chromium chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--hide-scrollbars",
              "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):  # WebGL without a GPU
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver), options=opts), None
    except Exception as exc:  # noqa: BLE001 - any start failure is a reason to skip
        return None, f"headless Chromium did not start: {str(exc).splitlines()[0]}"


def requests(driver):
    """Every URL the page asked for since the last call (from the DevTools network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def wait(driver, script, timeout=10.0):
    """Poll ``return <script>`` until it is truthy; return its value (raise on timeout)."""
    import time
    t = time.perf_counter()
    while True:
        v = driver.execute_script("return " + script)
        if v:
            return v
        if time.perf_counter() - t > timeout:
            raise TimeoutError(f"waited {timeout} s for: {script}")
        time.sleep(0.05)
