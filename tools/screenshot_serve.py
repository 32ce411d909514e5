"""Screenshot of the ``engine serve`` web page for the README (docs/serve.png).

    python tools/screenshot_serve.py REPO [--out docs/serve.png]

Starts the service over REPO on a free loopback port, pastes the first spectrum of the test MassBank
MGF into the page in headless Chromium (/usr/bin/chromium, /usr/bin/chromedriver), searches and saves
the page once the hits and their mirror plots are drawn.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

from engine.jobs.lookup import read_query_file
from engine.jobs.serve import create_app, server

ROOT = Path(__file__).resolve().parents[1]
QUERY = ROOT / "tests" / "data" / "massbank" / "massbank.mgf"


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--out", default=str(ROOT / "docs" / "serve.png"))
    ap.add_argument("--record", type=int, default=9, help="Which spectrum of the test MGF to paste.")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    srv = server(create_app(args.repo), port=port)
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.1)
    row = read_query_file(QUERY).to_pylist()[args.record]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1120"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        driver.find_element(By.ID, "peaks").send_keys("\n".join(f"{m:.4f} {i:.0f}" for m, i in
                                                                zip(row["mz"], row["intensity"], strict=True)))
        driver.find_element(By.ID, "precursor").send_keys(f"{row['precursor_mz']:.4f}")
        if row["ion_mode"] == "negative":
            driver.find_element(By.CSS_SELECTOR, "#ion-mode option[value=negative]").click()
        driver.find_element(By.ID, "top-k").clear()
        driver.find_element(By.ID, "top-k").send_keys("6")
        driver.find_element(By.ID, "cross-mode").click()
        driver.find_element(By.ID, "search").click()
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "svg.mirror")) == 6)
        time.sleep(0.5)
        driver.save_screenshot(args.out)
    finally:
        driver.quit()
        srv.should_exit = True
    print(args.out)


if __name__ == "__main__":
    main()
