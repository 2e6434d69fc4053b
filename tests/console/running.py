"""Real consoles for the tests: one served by uvicorn in a thread of this process,
one as a ``syncstore ui`` process, and headless Chromium to look at them.

Nothing here is a stand-in: the app is the one ``syncstore ui`` serves, on a
real socket, and the browser is the system's Chromium driven through its
chromedriver (nothing is downloaded).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from syncstore.console import ConsoleServer
from syncstore.console.gate import cookie_name, csrf_token_for

SYNCSTORE = str(Path(sys.executable).with_name("syncstore"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
_URL = re.compile(r"open (http://127\.0\.0\.1:(\d+)/\?token=(\S+))")


class ConsoleThread(ConsoleServer):
    """The console over ``store`` on a free port, served from a background thread,
    with what the tests need to talk to it as a signed-in browser would."""

    def __init__(self, store: Any, **options: Any):
        super().__init__(store, port=0, **options)
        self.csrf = csrf_token_for(self.token)

    def client(self, *, signed_in: bool = True) -> httpx.Client:
        """An HTTP client; signed in, it carries the run's cookie as a browser would."""
        cookies = {cookie_name(self.port): self.token} if signed_in else {}
        return httpx.Client(base_url=self.base, cookies=cookies, timeout=30, follow_redirects=False)

    def post(self, client: httpx.Client, path: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        """A form post with the run's CSRF token, as the pages send it."""
        return client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kw)


class UiProcess:
    """``syncstore --db PATH ui --port 0`` in a process of its own; the sync token
    goes through the environment, never the command line."""

    def __init__(self, db: str, *, url: str | None = None, token: str | None = None):
        self.db = db
        self.sync_url = url
        self._sync_token = token
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self.url = ""  # the address printed, token included
        self.port = 0
        self.token = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> UiProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("SYNCSTORE_URL", "SYNCSTORE_TOKEN")}
        if self.sync_url is not None:
            env.update(SYNCSTORE_URL=self.sync_url, SYNCSTORE_TOKEN=self._sync_token or "")
        self.proc = subprocess.Popen(
            [SYNCSTORE, "--db", self.db, "ui", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"syncstore ui printed no URL:\n{self.log()}") from None
            if line is None:
                raise AssertionError(f"syncstore ui exited:\n{self.log()}")
            found = _URL.search(line)
            if found:
                self.url, self.port, self.token = found.group(1), int(found.group(2)), found.group(3)
                return self

    def log(self) -> str:
        return "".join(self.output[-80:])

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a service manager stops it; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"syncstore ui did not stop on SIGTERM:\n{self.log()}") from None
        return self.proc.returncode

    def __enter__(self) -> UiProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


# --- the browser ----------------------------------------------------------------


def browser_available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


class Browser:
    """Headless Chromium through selenium and the system's chromedriver."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="syncstore-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",  # as root
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={self.profile}",
            "--window-size=1400,1000",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def go(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def click(self, css: str) -> None:
        """Click the element; found again if a live region replaced it meanwhile."""
        self.wait(lambda: self.find(css).click() or True, what=f"{css} to click")

    def wait(self, condition: Callable[[], Any], *, timeout: float = 20, what: str = "the page") -> Any:
        """Poll ``condition`` until it returns something true; fail naming ``what``."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except (NoSuchElementException, StaleElementReferenceException) as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}" + (f" ({last.__class__.__name__})" if last else ""))

    def ready(self) -> None:
        """Wait for htmx to have opened the page's event stream."""
        self.wait(lambda: self.driver.execute_script("return !!(window.htmx && document.body && htmx.find('[sse-connect]'))"), what="htmx")

    def errors(self) -> list[str]:
        """The page's console errors (a refused script or style shows up here)."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]
