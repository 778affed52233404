"""End to end: `gpuplan dashboard` on localhost, driven by a real headless Chromium (selenium).

Each page is loaded, one input is changed the way a user changes it, and the figure the page then
shows is checked against the planner's (or the catalog's) own number; a screenshot of each page
is saved under the test's tmp dir (and, with GPUPLAN_SCREENSHOTS=DIR, copied there: that is how
docs/dashboard.png is made). Chromium and chromedriver come from Debian's packages
(`apt-get install -y chromium chromium-driver`; .ci/run installs them where apt can); the test
skips, saying so, only where neither is installed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from gpuplan.planner import Method, TrainingSetup, estimate  # noqa: E402
from gpuplan.planner.io.catalog import _gpu_catalog, resolve_model  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "app" / "fixtures"
GIB = 2**30
WAIT = 60   # seconds: the first page load imports plotly and the planner in the server
# Streamlit replaces elements on every rerun: a found element can go stale before it is read.
RERENDERED = (NoSuchElementException, StaleElementReferenceException)


def _browser() -> tuple[str, str] | None:
    """(chromium binary, chromedriver) from the system packages, or None."""
    binary = next((b for b in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if b), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


BROWSER = _browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium + chromedriver on this machine "
                                "(install them: apt-get install -y chromium chromium-driver)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gpuplan dashboard exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the dashboard did not answer at {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def server():
    """The base URL of a `gpuplan dashboard` subprocess, killed (its whole process group) at the end."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gpuplan", "dashboard", "--port", str(port), "--headless"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        url = f"http://localhost:{port}"
        _wait_healthy(url, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = BROWSER
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1200", "--hide-scrollbars"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, predicate, what: str):
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.25, ignored_exceptions=RERENDERED).until(predicate)
    except Exception as e:  # selenium's TimeoutException says nothing of what was awaited
        driver.save_screenshot(str(Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / "dashboard-timeout.png"))
        raise AssertionError(f"timed out waiting for {what} (page at {driver.current_url}; "
                             "screenshot: dashboard-timeout.png)") from e


def _metric(driver, label: str) -> str | None:
    for m in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
        if m.find_element(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]').text.strip() == label:
            return m.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]').text.strip()
    return None


CUT_METRICS = """return Array.from(document.querySelectorAll('[data-testid="stMetricValue"]')).filter(el =>
  [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1) || el.innerText.includes('\u2026')
).map(el => el.innerText);"""


def _metrics_whole(driver) -> None:
    """No metric tile cuts its number or unit: no ellipsis, nothing wider than its box."""
    values = [m.text for m in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetricValue"]')]
    assert values and not any("\u2026" in v for v in values), values
    assert driver.execute_script(CUT_METRICS) == [], "metric values cut"


CHIPS = '[data-testid="stMultiSelectTagsContainer"] [data-tag]'
CUT_CHIPS = """return Array.from(document.querySelectorAll('""" + CHIPS + """')).filter(el =>
  [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1) || el.innerText.includes('\u2026')
).map(el => el.innerText);"""


def _chips_whole(driver, names: list[str]) -> None:
    """Every multiselect chip shows its whole name: no ellipsis, nothing wider than its box."""
    chips = [c.text for c in driver.find_elements(By.CSS_SELECTOR, CHIPS) if c.is_displayed()]
    assert all(any(n in c for c in chips) for n in names), chips
    assert driver.execute_script(CUT_CHIPS) == [], "multiselect chips cut"


def _open(driver, url: str, title: str) -> None:
    driver.get(url)
    headings = '[data-testid="stHeading"]'   # st.header
    _wait(driver, lambda d: any(h.text.strip() == title for h in d.find_elements(By.CSS_SELECTOR, headings)),
          f"the {title} page")


def _type_into(driver, label: str, text: str) -> None:
    """Replaces the text of the input whose aria-label is `label`, then commits it with Enter."""
    field = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]'), label)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(text, Keys.ENTER)


def _shot(driver, tmp_path: Path, name: str) -> Path:
    time.sleep(0.5)   # let plotly finish its transition before the picture
    path = tmp_path / f"dashboard-{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    if os.environ.get("GPUPLAN_SCREENSHOTS"):
        out = Path(os.environ["GPUPLAN_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)
    return path


def _plot_titles(driver) -> list[str]:
    return [t.text for t in driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .gtitle")]


def test_estimate_page(server, browser, tmp_path):
    _open(browser, server, "Estimate")
    model = resolve_model("llama-3.1-8b")
    default = estimate(model, TrainingSetup()).device_total_bytes
    _wait(browser, lambda d: _metric(d, "device total") == f"{default / GIB:,.2f} GiB", "the default device total")
    _type_into(browser, "batch size", "2")
    small = estimate(model, TrainingSetup(batch_size=2)).device_total_bytes
    _wait(browser, lambda d: _metric(d, "device total") == f"{small / GIB:,.2f} GiB", "the batch-2 device total")
    _wait(browser, lambda d: "batch_size=2" in d.current_url, "the batch size in the URL")
    _wait(browser, lambda d: "Memory by component and phase" in _plot_titles(d), "the stacked bar chart")
    _metrics_whole(browser)
    _shot(browser, tmp_path, "estimate")


def test_a_shared_link_reopens_the_setup(server, browser, tmp_path):
    """The README's screenshot (docs/dashboard.png) is this page."""
    _open(browser, f"{server}/?method=qlora&seq_len=4096&batch_size=4&gpus=rtx-4090,l40s,a100-sxm-80gb", "Estimate")
    expected = estimate(resolve_model("llama-3.1-8b"),
                        TrainingSetup(method=Method.QLORA, seq_len=4096, batch_size=4)).device_total_bytes
    _wait(browser, lambda d: _metric(d, "device total") == f"{expected / GIB:,.2f} GiB", "the linked setup's total")
    _wait(browser, lambda d: "Memory by component and phase" in _plot_titles(d), "the stacked bar chart")
    _shot(browser, tmp_path, "estimate-link")


def test_compare_page(server, browser, tmp_path):
    _open(browser, f"{server}/?page=compare", "Compare")

    def bars(d) -> list[str]:
        return [t.text for t in d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .xtick text") if t.text[:2] in
                ("1:", "2:", "3:", "4:")]
    _wait(browser, lambda d: len(bars(d)) == 3, "three setups in the chart")
    _type_into(browser, "setups", "2")
    _wait(browser, lambda d: len(bars(d)) == 2 and "setups=2" in d.current_url, "two setups in the chart")
    _wait(browser, lambda d: "Device total vs sequence length" in _plot_titles(d), "the sweep chart")
    _shot(browser, tmp_path, "compare")


def test_recommend_page(server, browser, tmp_path):
    from gpuplan.planner.plans.recommend import Constraints, recommend

    _open(browser, f"{server}/?page=recommend&model=qwen-2.5-0.5b&gpus=rtx-4090,h100-sxm-80gb&tokens=50M", "Recommend")
    rec = recommend(resolve_model("qwen-2.5-0.5b"), 50_000_000, 1.0, Constraints(gpus=("rtx-4090", "h100-sxm-80gb")))
    _wait(browser, lambda d: _metric(d, "Cheapest: cost") == f"${rec.cheapest.usd:,.2f}", "the cheapest plan's cost")
    _wait(browser, lambda d: any("Cost" in t or "USD" in t for t in _plot_titles(d)), "the Pareto scatter")
    _metrics_whole(browser)
    _chips_whole(browser, ["rtx-4090", "h100-sxm-80gb"])
    _shot(browser, tmp_path, "recommend")
    _type_into(browser, "budget (USD)", "0.01")
    _wait(browser, lambda d: "No plan meets these constraints" in d.page_source and "budget=0.01" in d.current_url,
          "the over-budget message")


def test_profile_page_loads_a_profile_json(server, browser, tmp_path):
    _open(browser, f"{server}/?page=profile&source=load", "Profile")
    upload = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'input[type="file"]'), "the file input")
    fixture = FIXTURES / "profile-tiny-llama.json"
    upload.send_keys(str(fixture))
    saved = json.loads(fixture.read_text())
    label = "peak allocated (max_memory_allocated)"
    _wait(browser, lambda d: _metric(d, label) == f"{saved['peak_allocated_bytes'] / 2**20:,.2f} MiB", "the figures")
    _wait(browser, lambda d: "Memory timeline of the profiled step" in _plot_titles(d), "the timeline")
    _shot(browser, tmp_path, "profile")


def test_gpus_page_filters(server, browser, tmp_path):
    _open(browser, f"{server}/?page=gpus", "GPUs")
    total = len(_gpu_catalog()["gpus"])
    captions = lambda d: " ".join(c.text for c in d.find_elements(By.CSS_SELECTOR, '[data-testid="stCaptionContainer"]'))  # noqa: E731
    _wait(browser, lambda d: f"{total} of {total} GPUs" in captions(d), "the whole catalog")
    _type_into(browser, "name contains", "h100")
    h100s = sum("h100" in g["name"] for g in _gpu_catalog()["gpus"])
    _wait(browser, lambda d: f"{h100s} of {total} GPUs" in captions(d) and "q=h100" in d.current_url, "the filter")
    _shot(browser, tmp_path, "gpus")


def _watch_lines(first: int, last: int) -> str:
    """Sample lines of a `gpuplan watch` file (schema gpuplan.watch-sample/1), GPU memory rising 1 GiB a second."""
    from gpuplan.profiler.watch.schema import Kind, line

    rows = [] if first > 1 else [line(Kind.START, 0.0, mode="launch", command=["python", "train.py"], pid=7,
                                      expected=None, notes=[])]
    for s in range(first, last + 1):
        gpu = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 80 * GIB,
               "run_memory_bytes": (20 + s) * GIB, "run_memory_source": "process", "utilization_pct": 90}
        rows.append(line(Kind.SAMPLE, float(s), gpus=[gpu], processes=[], rss_bytes=GIB, notes=[]))
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_watch_page_follows_a_growing_file(server, browser, tmp_path):
    """The page re-reads the file on its own (st.fragment run_every): new samples appear with no input."""
    path = tmp_path / "run.jsonl"
    path.write_text(_watch_lines(1, 3))
    _open(browser, f"{server}/?page=watch&runs={path}&refresh=1", "Watch")
    _wait(browser, lambda d: _metric(d, "peak GPU memory (NVML)") == "23.00 GiB", "the first samples' peak")
    with open(path, "a") as f:
        f.write(_watch_lines(4, 7))
    _wait(browser, lambda d: _metric(d, "peak GPU memory (NVML)") == "27.00 GiB", "the appended samples' peak")
    _wait(browser, lambda d: "Memory over time" in _plot_titles(d), "the memory chart")
    _shot(browser, tmp_path, "watch")


def test_metrics_whole_in_a_narrow_window(server, browser, tmp_path):
    """A 70B full fine-tune on 8 GPUs has four-digit GiB figures; at 1000 px they still show whole."""
    browser.set_window_size(1000, 1200)
    try:
        _open(browser, f"{server}/?model=llama-3.1-405b&batch_size=64&seq_len=8192", "Estimate")
        expected = estimate(resolve_model("llama-3.1-405b"), TrainingSetup(batch_size=64, seq_len=8192))
        _wait(browser, lambda d: _metric(d, "device total") == f"{expected.device_total_bytes / GIB:,.2f} GiB",
              "the 405B device total")
        _metrics_whole(browser)
        _shot(browser, tmp_path, "estimate-narrow")
    finally:
        browser.set_window_size(1600, 1200)


def test_gpu_chips_whole_in_a_narrow_window(server, browser, tmp_path):
    """Long GPU names chosen in the Estimate page's narrow GPU picker keep their whole name."""
    names = ["h200-sxm-141gb", "a100-sxm-80gb", "rtx-6000-ada", "mi300x", "l40s"]
    browser.set_window_size(1000, 1200)
    try:
        _open(browser, f"{server}/?gpus={','.join(names)}", "Estimate")
        _wait(browser, lambda d: len([c for c in d.find_elements(By.CSS_SELECTOR, CHIPS) if c.is_displayed()]) >= 5,
              "the five GPU chips")
        _chips_whole(browser, names)
        _shot(browser, tmp_path, "estimate-gpu-chips")
    finally:
        browser.set_window_size(1600, 1200)


def test_a_link_with_an_unknown_model_or_page_says_so(server, browser):
    _open(browser, f"{server}/?model=qwen2.5-7", "Estimate")
    _wait(browser, lambda d: "is not a preset" in d.page_source and "qwen-2.5-7b" in d.page_source,
          "the unknown-model warning")
    _open(browser, f"{server}/?page=nope", "Estimate")
    _wait(browser, lambda d: "does not exist" in d.page_source, "the unknown-page warning")
