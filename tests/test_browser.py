"""The web page in a real browser: Debian's headless Chromium driven by Selenium through the system
chromedriver (no browser download), against a server this test starts on a small run folder. It types a
test query, sees several methods' rankings with a judged document starred, opens the docid inspector and a
document, and writes a screenshot to test-artifacts/ (kept by CI).

Skipped where Chromium is not installed, unless GENIR_REQUIRE_BROWSER=1 (set by .ci/run, which installs it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from genir.live import LiveIndex
from tests.test_serve import start_server

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def browser():
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        if os.environ.get("GENIR_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} and {DRIVER} are required (apt-get install chromium chromium-driver)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # offline machine: no background connections, no sandbox as root
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def test_search_page_shows_methods_side_by_side_and_the_inspector(live_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run = tmp_path / "run"
    shutil.copytree(live_run, run)
    index = LiveIndex(run)
    coll = index.collection
    # a test query whose judged document BM25 finds, so that the page has a starred hit to show
    qid = next(q for q in coll.qrels["test"]
               if {h.doc_id for h in index.searcher("bm25").search(coll.queries[q], 10)} & set(coll.qrels["test"][q]))
    url, stop = start_server(index)
    driver = browser()
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "documents" in d.find_element(By.ID, "status").text)
        driver.find_element(By.ID, "q").send_keys(coll.queries[qid])
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".column li.hit")) >= 10)
        columns = driver.find_elements(By.CSS_SELECTOR, ".column")
        names = [c.get_attribute("data-method") for c in columns]
        assert names[:2] == ["bm25", "dense"] and "genret" in names and "glen" in names
        with_hits = [c for c in columns if c.find_elements(By.CSS_SELECTOR, "li.hit")]
        assert len(with_hits) >= 2
        assert driver.find_elements(By.CSS_SELECTOR, "li.hit.relevant .star")  # a judged document is marked
        glen = columns[names.index("glen")]
        assert glen.find_elements(By.CSS_SELECTOR, ".docid")  # docids shown beside the hits
        # the README's picture of the page is this screenshot (GENIR_UPDATE_DOCS=1 writes it into docs/)
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "search-page.png"))
        assert (ARTIFACTS / "search-page.png").stat().st_size > 10_000
        if os.environ.get("GENIR_UPDATE_DOCS"):
            shutil.copyfile(ARTIFACTS / "search-page.png", Path(__file__).resolve().parent.parent / "docs" /
                            "search-page.png")
        # the docid inspector: the beam step by step
        columns[names.index("genret")].find_element(By.CSS_SELECTOR, "button.inspect").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#inspector table.step"))
        assert "genret" in driver.find_element(By.ID, "inspector-title").text
        steps = driver.find_elements(By.CSS_SELECTOR, "#inspector table.step")
        assert len(steps) >= 2 and driver.find_elements(By.CSS_SELECTOR, "#inspector table.hits tr")
        # a document: its text and the documents sharing its docid prefixes
        title = glen.find_element(By.CSS_SELECTOR, "li.hit .title")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", title)  # clear of the sticky header
        title.click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#document-body table"))
        driver.execute_script("window.scrollTo(0, 0)")
        assert driver.save_screenshot(str(ARTIFACTS / "search-page-document.png"))
        assert (ARTIFACTS / "search-page-document.png").stat().st_size > 10_000
        # the page's state is its URL: the search above is linkable, a second one pushes a new entry, the back
        # button returns to the first, and a link opened afresh runs its search (one method, its own k)
        from urllib.parse import parse_qs, urlparse

        first = parse_qs(urlparse(driver.current_url).query)
        assert first["q"] == [coll.queries[qid]] and first["k"] == ["10"]
        box = driver.find_element(By.ID, "q")
        box.clear()
        box.send_keys("vitamin D and bone fractures")
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: "vitamin" in parse_qs(urlparse(d.current_url).query).get("q", [""])[0])
        driver.back()
        wait.until(lambda d: d.find_element(By.ID, "q").get_attribute("value") == coll.queries[qid])
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.hit.relevant .star"))
        from urllib.parse import urlencode

        driver.get(url + "/?" + urlencode({"q": coll.queries[qid], "k": 3, "method": "dense"}))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".column li.hit"))
        assert [c.get_attribute("data-method") for c in driver.find_elements(By.CSS_SELECTOR, ".column")] == ["dense"]
        assert len(driver.find_elements(By.CSS_SELECTOR, ".column li.hit")) == 3  # dense always fills k
        assert driver.find_element(By.ID, "q").get_attribute("value") == coll.queries[qid]
        assert driver.find_element(By.ID, "k").get_attribute("value") == "3"
    finally:
        driver.quit()
        stop()
