"""report.html: the data it embeds, its tolerance of partial run folders, and the page in a real browser.

The browser tests drive Debian's chromium through chromedriver (Selenium,
pointed at /usr/bin/chromedriver: no driver download). Without them the tests
fail, saying how to install them — .ci/run installs both.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import pytest

from kerasxai.folder.report import read_run, report_data, write_report
from tests.runfolder import CLASSES, make_run

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


@pytest.fixture(scope="module")
def run24(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("run24"))
    rows = make_run(run, 24, methods=("gradcam", "layercam", "saliency"))
    return run, rows


def _embedded(page: str) -> dict:
    match = re.search(r'<script id="kerasxai-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def _digest(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# ---------------------------------------------------------------------------- the data


def test_cards_carry_each_rows_prediction_label_and_maps(run24):
    run, rows = run24
    data = report_data(run)
    assert len(data["cards"]) == len(rows) == 24
    assert data["methods"] == ["gradcam", "layercam", "saliency"] and data["labels"] and data["overlays"]
    for card, row in zip(data["cards"], rows):  # file order kept
        assert card["id"] == row["id"] and card["file"] == row["file"]
        assert card["pred"] == row["top_k"][0]["name"] and card["conf"] == row["top_k"][0]["probability"]
        assert card["correct"] == (row["label"] == row["top_k"][0]["name"])
        assert card["flat"] == sorted(m for m, s in row["methods"].items() if s["flat"])
        assert card["image"] == row["image"] and os.path.isfile(os.path.join(run, card["image"]))
        assert card["overlays"] == row["overlays"]
    assert sum(c["correct"] is False for c in data["cards"]) == 6  # every 4th image, from 1, is predicted wrongly
    assert sum(bool(c["flat"]) for c in data["cards"]) == 5  # every 5th has a flat Grad-CAM
    assert data["problems"] == []
    # one colour scale for every method, saliency included: the colormap of the overlays and of the figures
    from kerasxai.figures.common import MAP_CMAP
    from kerasxai.folder.report import _gradient

    assert data["scales"] == {m: _gradient(MAP_CMAP) for m in data["methods"]} and MAP_CMAP == "jet"


def test_true_labels_may_be_names_indices_or_imagenet_wordnet_ids():
    from kerasxai.folder.report import _is_correct

    tabby = {"class": 281, "name": "tabby", "probability": 0.6}
    assert _is_correct("tabby", tabby) and _is_correct("Tabby", tabby) and _is_correct("n02123045", tabby)
    assert _is_correct("281", tabby) and not _is_correct("n02123159", tabby) and not _is_correct("tiger_cat", tabby)
    assert _is_correct("golden retriever", {"class": 207, "name": "golden_retriever"})
    assert _is_correct(None, tabby) is None and _is_correct("cat", {}) is None
    assert not _is_correct("n02123045", {"class": 281, "name": "cat"})  # not ImageNet names: no WordNet ids


def test_partial_and_damaged_run_folders_still_give_a_page(tmp_path):
    run = str(tmp_path)
    rows = [{"id": "only-id"},
            {"id": "b", "file": "b.jpg", "image": "images/gone.jpg", "overlays": {"gradcam": "overlays/gone.png"},
             "top_k": [{"class": 3, "name": None, "probability": 0.5}], "label": "3", "size": [10, float("nan")]},
            {"id": "b", "file": "b-again.jpg", "methods": {"gradcam": {"flat": True, "max": 0.0, "mean": 0.0}}}]
    with open(tmp_path / "predictions.jsonl", "w") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n\n[1, 2]\n{\"id\": \"cut sh")
    with open(tmp_path / "run.json", "w") as fh:
        fh.write('{"model": "m", "images": NaN, "methods": ["gradcam"]}')
    before = _digest(run)
    with pytest.warns(RuntimeWarning, match="line 5 is not a JSON object") as shown:
        page_path = write_report(run)
    assert [w.filename for w in shown if "line 5" in str(w.message)] == [__file__]  # the caller's line
    page = open(page_path, encoding="utf-8").read()
    data = _embedded(page)
    assert [c["id"] for c in data["cards"]] == ["only-id", "b"] and data["cards"][1]["file"] == "b-again.jpg"
    assert data["run"]["images"] is None and data["run"]["model"] == "m"
    assert any("line 6" in p for p in data["problems"]) and any("'b' appears more than once" in p for p in data["problems"])
    only = data["cards"][0]
    assert only["file"] == "only-id" and only["pred"] is None and only["image"] is None and only["overlays"] is None
    info, kept, problems = read_run(run)
    assert len(kept) == 2
    # a row naming files that are not there: counted, no broken link on the page
    rows[2].update(image="images/gone.jpg")
    with open(tmp_path / "predictions.jsonl", "w") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows[:2]) + "\n")
    data = report_data(run)
    assert data["cards"][1]["image"] is None and data["cards"][1]["overlays"] == {"gradcam": None}
    assert sorted(data["cards"][1]["missing"]) == ["images/gone.jpg", "overlays/gone.png"]
    assert any("2 file(s) named in predictions.jsonl are not in the run folder" in p for p in data["problems"])
    assert data["cards"][1]["correct"] is True and data["cards"][1]["pred"] == "class 3" and data["cards"][1]["size"] is None
    after = _digest(run)
    assert {k: v for k, v in after.items() if k != "report.html"} == {k: v for k, v in before.items()} | {
        "predictions.jsonl": after["predictions.jsonl"]}  # only what this test rewrote changed
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        write_report(str(tmp_path / "images"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="is it a kerasxai run folder"):
        write_report(str(tmp_path / "empty"))


def test_embedded_data_cannot_break_out_of_its_script(tmp_path):
    nasty = '</script><script>alert(1)</script><!-- {{js}} & "quotes"'
    with open(tmp_path / "predictions.jsonl", "w") as fh:
        fh.write(json.dumps({"id": "x", "file": nasty, "label": nasty,
                             "top_k": [{"class": 0, "name": nasty, "probability": 1.0}]}) + "\n")
    with open(tmp_path / "run.json", "w") as fh:
        json.dump({"model": nasty}, fh)
    page = open(write_report(str(tmp_path)), encoding="utf-8").read()
    assert "<script>alert(1)" not in page and page.count("</script>") == 2
    assert _embedded(page)["cards"][0]["file"] == nasty  # and the page still shows it exactly
    assert "<title>kerasxai report: &lt;/script&gt;" in page


def test_report_leaves_the_run_folder_as_it_was_and_the_command_rewrites_it(run24, tmp_path):
    from kerasxai.cli import main

    run = str(tmp_path / "copy")
    shutil.copytree(run24[0], run)
    before = _digest(run)
    assert main(["report", run, "--quiet"]) == 0
    after = _digest(run)
    assert set(after) - set(before) == {"report.html"}
    assert all(after[k] == v for k, v in before.items())
    elsewhere = tmp_path / "pages" / "r.html"
    os.makedirs(elsewhere.parent)
    assert main(["report", run, "--out", str(elsewhere), "--quiet"]) == 0
    card = _embedded(elsewhere.read_text(encoding="utf-8"))["cards"][0]
    assert card["image"] == "../copy/" + run24[1][0]["image"]  # links relative to where the page is
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_a_built_wheel_ships_the_class_index_and_the_report_assets(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = tmp_path / "src"
    shutil.copytree(os.path.join(root, "kerasxai"), src / "kerasxai", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "setup.py", "README.md"):
        shutil.copy(os.path.join(root, name), src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"kerasxai/data/imagenet_class_index.json", "kerasxai/folder/report_assets/report.html",
            "kerasxai/folder/report_assets/report.css", "kerasxai/folder/report_assets/report.js"} <= names
    # and every package, not only those that were packages before (a folder without __init__.py is left out)
    packages = {os.path.relpath(d, root).replace(os.sep, "/") for d, _, files in os.walk(os.path.join(root, "kerasxai"))
                if any(f.endswith(".py") for f in files) and "__pycache__" not in d}
    assert {p + "/__init__.py" for p in packages} <= names


# ---------------------------------------------------------------------------- the page, in chromium


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the report's browser tests need Debian's chromium and "
                    "its driver. Install them with: apt-get update && apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install selenium (it is in the test extra: pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="kerasxai-chromium-")
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))  # a driver path: no Selenium Manager
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path):
    driver.get("file://" + os.path.abspath(path))
    driver.get_log("browser")  # start each page with an empty log
    driver.get("file://" + os.path.abspath(path))
    _wait(driver, lambda: driver.execute_script("return document.querySelectorAll('.card').length") > 0)


def _wait(driver, condition, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


def _errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def _shown(driver):
    return driver.execute_script("return [...document.querySelectorAll('.card')].map(c => [c.dataset.id, c.dataset.conf])")


def _choose(driver, select_id, value):
    driver.execute_script("const s = document.getElementById(arguments[0]); s.value = arguments[1];"
                          "s.dispatchEvent(new Event('change'));", select_id, value)


def _shot(driver, tmp_path, name):
    folder = os.environ.get("KERASXAI_SCREENSHOTS") or str(tmp_path)
    os.makedirs(folder, exist_ok=True)
    driver.save_screenshot(os.path.join(folder, name))


def test_page_counts_filters_sorts_loads_images_and_opens_the_detail_view(browser, run24, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run, rows = run24
    page = write_report(run)
    _open(browser, page)
    _shot(browser, tmp_path, "report_grid.png")
    by_id = {r["id"]: r for r in rows}
    top = lambda r: r["top_k"][0]  # noqa: E731
    shown = _shown(browser)
    assert sorted(i for i, _ in shown) == sorted(by_id)  # one card per row of predictions.jsonl
    confs = [float(c) for _, c in shown]
    assert confs == sorted((top(r)["probability"] for r in rows), reverse=True)  # confidence, high to low

    _choose(browser, "sort", "conf-asc")
    assert [float(c) for _, c in _shown(browser)] == sorted(confs)
    _choose(browser, "pred", "tabby")
    assert sorted(i for i, _ in _shown(browser)) == sorted(i for i, r in by_id.items() if top(r)["name"] == "tabby")
    _choose(browser, "pred", "")
    _choose(browser, "truth", "espresso")
    assert sorted(i for i, _ in _shown(browser)) == sorted(i for i, r in by_id.items() if r["label"] == "espresso")
    _choose(browser, "truth", "")
    browser.find_element(By.ID, "wrong").click()
    wrong = sorted(i for i, r in by_id.items() if r["label"] != top(r)["name"])
    assert sorted(i for i, _ in _shown(browser)) == wrong and len(wrong) == 6
    assert browser.find_element(By.ID, "count").get_attribute("data-matching") == "6"
    browser.find_element(By.ID, "flat").click()  # misclassified and flat
    flat = {i for i, r in by_id.items() if any(s["flat"] for s in r["methods"].values())}
    assert sorted(i for i, _ in _shown(browser)) == sorted(set(wrong) & flat)
    _shot(browser, tmp_path, "report_filtered.png")
    browser.find_element(By.ID, "wrong").click()
    assert sorted(i for i, _ in _shown(browser)) == sorted(flat)
    browser.find_element(By.ID, "flat").click()
    assert len(_shown(browser)) == 24

    # every image and overlay loads (lazily: each card is scrolled into view)
    for card in browser.find_elements(By.CSS_SELECTOR, ".card"):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
    images = "return [...document.querySelectorAll('.card img')]"
    _wait(browser, lambda: browser.execute_script(images + ".every(i => i.complete && i.naturalWidth > 0)"))
    flat_tiles = len(browser.find_elements(By.CSS_SELECTOR, ".card .placeholder.flat"))
    assert browser.execute_script(images + ".length") == 24 * 4 - flat_tiles and flat_tiles == 5
    # the flat map is marked, not drawn: no overlay image in its place
    flat_card = browser.find_element(By.CSS_SELECTOR, f".card[data-id='{sorted(flat)[0]}']")
    assert "flat: no positive evidence" in flat_card.text
    assert [t.text for t in flat_card.find_elements(By.CSS_SELECTOR, "figcaption")] == ["image", "gradcam", "layercam", "saliency"]

    # the detail view: every method side by side, a colour scale, keyboard navigation
    browser.execute_script("window.scrollTo(0, 0)")
    flat_card.click()
    detail = browser.find_element(By.ID, "detail")
    _wait(browser, detail.is_displayed)
    _wait(browser, lambda: browser.execute_script(
        "return [...document.querySelectorAll('#detail img')].every(i => i.complete && i.naturalWidth > 0)"))
    _shot(browser, tmp_path, "report_detail.png")
    captions = [f.text.split(" · ")[0] for f in detail.find_elements(By.CSS_SELECTOR, ".panel figcaption")]
    assert captions == ["image", "gradcam @ conv2", "layercam @ conv2", "saliency @ input"]
    assert "flat: no positive evidence" in detail.text and "The map is all zeros" in detail.text
    row = by_id[sorted(flat)[0]]
    assert f"0 = least, 1 = most evidence for {row['target_name']}" in detail.text
    assert detail.find_element(By.CSS_SELECTOR, ".scale .bar").value_of_css_property("background-image").startswith("linear-gradient")
    assert detail.find_element(By.ID, "detail-title").text == row["file"]
    position = detail.find_element(By.CSS_SELECTOR, ".sheet-head .prob").text
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    assert detail.find_element(By.CSS_SELECTOR, ".sheet-head .prob").text != position
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    _wait(browser, lambda: not detail.is_displayed())

    # offline: every image comes from the run folder, nothing else is loaded, and nothing else can be
    urls = browser.execute_script("return [...document.images].map(i => i.currentSrc)")
    assert urls and all(u.startswith("file://" + os.path.abspath(run) + "/") for u in urls)
    assert browser.execute_script("return document.querySelectorAll("
                                  "'script[src], link[href]:not([rel=icon]), iframe, object, embed').length") == 0
    assert _errors(browser) == []
    blocked = browser.execute_async_script(
        "const done = arguments[0]; document.addEventListener('securitypolicyviolation', e => done(e.effectiveDirective),"
        " {once: true}); fetch('http://127.0.0.1:9/').catch(() => {});")
    assert blocked == "connect-src"  # the page's Content-Security-Policy refuses any request it might make


def _label_target_run(run):
    """A run explained with --target label: each map explains the image's true class, whatever was predicted."""
    rows = make_run(run, 8, methods=("gradcam", "saliency"), run_extra={"target": "label"})
    for row in rows:
        row["target"], row["target_name"] = CLASSES.index(row["label"]), row["label"]
    with open(os.path.join(run, "predictions.jsonl"), "w") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


def test_cards_say_which_class_the_map_explains_when_it_is_not_the_prediction(tmp_path):
    run = str(tmp_path / "label")
    rows = _label_target_run(run)
    cards = {c["id"]: c for c in report_data(run)["cards"]}
    for row in rows:
        predicted = row["top_k"][0]["name"]
        expected = None if predicted == row["label"] else f"{row['label']} (true label)"
        assert cards[row["id"]]["explains"] == expected
    assert sum(c["explains"] is not None for c in cards.values()) == 2  # the two mistakes
    # a run of each image's top class never needs saying; a fixed class index does, when it is not the top one
    make_run(str(tmp_path / "top"), 8)
    assert all(c["explains"] is None for c in report_data(str(tmp_path / "top"))["cards"])
    from kerasxai.folder.report import _explains

    top = {"class": 1, "name": "espresso"}
    assert _explains({"target": 3}, top, "rocket", "espresso", 3) == "rocket (the run's target)"
    assert _explains({"target": 1}, top, "espresso", "espresso", 1) is None


def test_a_card_explaining_the_true_label_says_so_in_the_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By

    run = str(tmp_path / "label")
    rows = _label_target_run(run)
    _open(browser, write_report(run))
    wrong = [r for r in rows if r["top_k"][0]["name"] != r["label"]]
    for row in rows:
        card = browser.find_element(By.CSS_SELECTOR, f".card[data-id='{row['id']}']")
        said = [e.text for e in card.find_elements(By.CSS_SELECTOR, ".explains")]
        assert said == ([f"map explains: {row['label']} (true label)"] if row in wrong else [])
        assert card.find_element(By.CSS_SELECTOR, ".pred").text == row["top_k"][0]["name"]  # the headline: predicted
    assert "each image's true class" in browser.find_element(By.ID, "controls").text
    browser.find_element(By.ID, "wrong").click()
    _shot(browser, tmp_path, "report_label_target.png")
    browser.find_element(By.CSS_SELECTOR, f".card[data-id='{wrong[0]['id']}']").click()
    detail = browser.find_element(By.ID, "detail")
    _wait(browser, detail.is_displayed)
    assert f"map explains {wrong[0]['label']} (true label) at conv2" in detail.text
    _shot(browser, tmp_path, "report_label_target_detail.png")
    assert _errors(browser) == []


def test_thousands_of_cards_are_drawn_a_screenful_at_a_time(browser, tmp_path):
    run = str(tmp_path / "big")
    rows = make_run(run, 2400, distinct_images=8, methods=("gradcam",))
    _open(browser, write_report(run))
    count = browser.execute_script("return document.querySelectorAll('.card').length")
    assert 0 < count < 400  # not 2400 cards at once
    assert browser.find_element("id", "count").text == "2,400 images"
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    _wait(browser, lambda: browser.execute_script("return document.querySelectorAll('.card').length") > count)
    _choose(browser, "pred", CLASSES[0])  # filters see every row, drawn or not
    expected = sum(r["top_k"][0]["name"] == CLASSES[0] for r in rows)
    assert browser.find_element("id", "count").get_attribute("data-matching") == str(expected)
    assert _errors(browser) == []


def test_a_run_without_overlays_or_labels_says_so(browser, tmp_path):
    from selenium.webdriver.common.by import By

    run = str(tmp_path / "plain")
    make_run(run, 8, overlays=False, labels=False, finished=False, run_extra={"images": 20})
    _open(browser, write_report(run))
    notices = browser.find_element(By.ID, "notices").text
    assert "Overlays were not written for this run" in notices and "--overlays" in notices
    assert "has not finished" in notices and "8 images so far of 20" in notices
    assert "Random weights" in notices
    assert browser.find_element(By.ID, "wrong").get_attribute("disabled") is not None
    assert not browser.find_elements(By.ID, "truth")
    stats = browser.find_elements(By.CSS_SELECTOR, ".card .placeholder:not(.flat)")
    assert stats and all("max " in s.text and "no overlay written" in s.text for s in stats)
    _shot(browser, tmp_path, "report_no_overlays.png")
    assert _errors(browser) == []


def test_the_report_of_a_real_folder_run_in_a_browser(browser, tmp_path):
    """explain_folder on class folders with an unreadable file, then the page: one card per row, the
    broken file's card says why, the true-class filter hides the right cards, images load, no errors."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    import kerasxai
    from kerasxai.evaluation import synthetic

    images, labels, _ = synthetic.shapes_dataset(6, size=32, seed=3)
    for i, (img, lab) in enumerate(zip(images, labels)):
        folder = tmp_path / "photos" / synthetic.CLASS_NAMES[lab]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).astype("uint8")).save(folder / f"{i}.png")
    (tmp_path / "photos" / "disc" / "broken.png").write_bytes(b"not a png")
    model = synthetic.small_cnn((32, 32, 3))
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="could not be read"):
        kerasxai.explain_folder(model, str(tmp_path / "photos"), str(run), methods=("gradcam", "saliency"),
                                overlays=True, class_names=list(synthetic.CLASS_NAMES), progress=False)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and sum(bool(r.get("error")) for r in rows) == 1
    _open(browser, write_report(str(run)))
    assert sorted(i for i, _ in _shown(browser)) == sorted(r["id"] for r in rows)
    broken = browser.find_element(By.CSS_SELECTOR, f".card[data-id='{next(r['id'] for r in rows if r.get('error'))}']")
    assert "could not" in broken.text.lower() or "not" in broken.text.lower()
    assert "could not be read or explained" in browser.find_element(By.ID, "notices").text
    _choose(browser, "truth", "cross")
    assert sorted(i for i, _ in _shown(browser)) == sorted(r["id"] for r in rows if r.get("label") == "cross")
    _choose(browser, "truth", "")
    for card in browser.find_elements(By.CSS_SELECTOR, ".card"):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
    _wait(browser, lambda: browser.execute_script(
        "return [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"))
    assert browser.execute_script("return document.querySelectorAll('.card img').length") >= 6 * 2
    _shot(browser, tmp_path, "report_real_run.png")
    assert _errors(browser) == []


def test_labels_that_name_no_class_of_the_model_are_not_called_misclassified(tmp_path):
    """Folder names that are not the model's classes (e.g. 'cat'/'other' over an ImageNet model) cannot
    make a prediction wrong: no red card, and the page says why."""
    from kerasxai.folder.report import report_data

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"id": "a", "file": "cat/a.jpg", "label": "cat", "top_k": [{"class": 150, "name": "sea_lion", "probability": 0.1}]},
            {"id": "b", "file": "tabby/b.jpg", "label": "tabby", "top_k": [{"class": 150, "name": "sea_lion", "probability": 0.1}]},
            {"id": "c", "file": "sea_lion/c.jpg", "label": "sea_lion", "top_k": [{"class": 150, "name": "sea_lion", "probability": 0.1}]}]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "run.json").write_text(json.dumps({"model": "vgg16", "methods": ["gradcam"]}))
    data = report_data(str(run))
    correct = {c["id"]: c["correct"] for c in data["cards"]}
    assert correct == {"a": None, "b": False, "c": True}  # 'tabby' is an ImageNet class: that one is wrong
    assert any("cat name no class of the model" in p for p in data["problems"])
