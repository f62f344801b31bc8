"""Fixtures of the console's tests: brokers serving the console, and a headless chromium.

The browser is Debian's ``chromium`` driven through ``chromium-driver`` by Selenium
(tools/setup-test-env.sh installs them). One browser per test session (restarted after a broker fixture ends):
starting it costs about a second, every test opens its pages in the same one. Missing browser or driver: the
test fails in CI (``CI=true``) and is skipped with the reason elsewhere.

Screenshots of the pages the browser tests visit go to ``$CONSOLE_SCREENSHOTS`` (default: a
folder under the session's pytest temporary directory), one PNG per
page, to look at after a CI run; ``CONSOLE_SCREENSHOTS=docs/console`` refreshes the README's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ci_helpers import need

from kbroker.testing import BrokerThread

WINDOW = (1280, 900)


def find_browser() -> tuple[str, str] | str:
    """``(browser, driver)`` paths, or why there are none. First found wins: ``$CHROMIUM_BIN``
    with ``$CHROMEDRIVER`` (any Chrome build and its matching driver); Debian's ``chromium`` and
    ``chromedriver``; a Google Chrome with the driver a CI runner image carries beside it
    (``$CHROMEWEBDRIVER``: GitHub's); Ubuntu's ``chromium-browser``."""
    which = shutil.which
    web = os.environ.get("CHROMEWEBDRIVER")
    web_driver = str(Path(web) / "chromedriver") if web and (Path(web) / "chromedriver").exists() else None
    pairs = [
        (os.environ.get("CHROMIUM_BIN"), os.environ.get("CHROMEDRIVER")),
        (which("chromium"), which("chromedriver")),
        (which("google-chrome") or which("google-chrome-stable"), web_driver or which("chromedriver")),
        (which("chromium-browser"), which("chromedriver")),
    ]
    for browser, driver in pairs:
        if browser and driver:
            return browser, driver
    if not any(b for b, _ in pairs):
        return "no chromium on PATH (tools/setup-test-env.sh installs Debian's chromium and chromium-driver)"
    return "no chromedriver for the chromium found (tools/setup-test-env.sh installs Debian's chromium-driver)"


class Chromium:
    """A headless chromium (a Selenium WebDriver), started on first use and quit by :meth:`close`.

    Chromium keeps a left page's event stream open (it reads on, to reuse the connection), so
    a broker stopped under it waits on that stream: a broker fixture closes the browser first,
    and the next test starts a new one (under a second)."""

    def __init__(self, binary: str, driver_path: str) -> None:
        self.binary = binary
        self.driver_path = driver_path
        self._driver: Any = None

    @property
    def driver(self) -> Any:
        """The running WebDriver (started now if needed)."""
        if self._driver is None:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service

            options = webdriver.ChromeOptions()
            options.binary_location = self.binary
            for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                        "--disable-extensions", "--no-first-run", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
                options.add_argument(arg)
            # The driver is given: Selenium Manager must not go to the network for one.
            self._driver = webdriver.Chrome(options=options, service=Service(self.driver_path))
            self._driver.set_page_load_timeout(20)
        return self._driver

    def close(self) -> None:
        """Quit the browser (and so every connection it holds), if it runs."""
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.quit()


#: The browsers of the session, closed before a console broker stops.
_BROWSERS: list[Chromium] = []


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """The session's headless chromium; a test gets its driver through ``browser``."""
    found = find_browser()
    if isinstance(found, str):
        need(found)
    try:
        import selenium  # noqa: F401
    except ImportError:
        need("selenium is not installed (pip install -e '.[test]')")
    binary, driver_path = found  # type: ignore[misc]
    holder = Chromium(binary, driver_path)
    _BROWSERS.append(holder)
    try:
        yield holder
    finally:
        _BROWSERS.remove(holder)
        holder.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder page screenshots are saved in (``$CONSOLE_SCREENSHOTS`` or a temporary one)."""
    where = os.environ.get("CONSOLE_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class ConsoleBroker:
    """A broker serving the console: ``kafka`` (the :class:`BrokerThread`) and the console's ``url``."""

    def __init__(self, kafka: BrokerThread) -> None:
        self.kafka = kafka
        self.bootstrap = kafka.bootstrap
        self.url = f"http://127.0.0.1:{kafka.broker.console.port}"


def start_console_broker(data_dir: Path, overrides: dict[str, str] | None = None) -> ConsoleBroker:
    """A started broker with its console on an ephemeral loopback port (stop ``.kafka``)."""
    values = {"console.port": "0", "group.initial.rebalance.delay.ms": "0"}
    values.update(overrides or {})
    kafka = BrokerThread(data_dir, values).start()
    if kafka.broker.console is None:
        kafka.stop()
        raise AssertionError("console.port is set but the broker serves no console")
    return ConsoleBroker(kafka)


def stop_console_broker(cb: ConsoleBroker) -> None:
    """Stop the broker, after closing the browsers (they may hold its live streams open)."""
    for holder in _BROWSERS:
        holder.close()
    cb.kafka.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleBroker]:
    """A broker with its console (actions allowed, no login), for the module."""
    cb = start_console_broker(tmp_path_factory.mktemp("console") / "data")
    try:
        yield cb
    finally:
        stop_console_broker(cb)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item: the browser fixture saves what a failed test saw."""
    report = yield
    setattr(item, "report_" + report.when, report)
    return report


@pytest.fixture
def browser(request: pytest.FixtureRequest, chromium: Chromium, screenshots: Path) -> Iterator[Any]:
    """The session's chromium for one test; when the test fails, the page it was on is saved beside the
    screenshots (``FAILED-<test>.png`` and ``.html``), to see what it saw."""
    browser = chromium.driver
    yield browser
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        stem = screenshots / ("FAILED-" + request.node.name.replace("/", "_")[:100])
        try:
            browser.save_screenshot(str(stem.with_suffix(".png")))
            stem.with_suffix(".html").write_text(f"<!-- {browser.current_url} -->\n" + browser.page_source)
        except Exception as e:  # the browser may be what failed
            stem.with_suffix(".txt").write_text(f"no page saved: {e!r}\n")
    browser.get("about:blank")  # the next test starts from an empty page


#: The SASL users of the ``secured`` broker's PLAIN listener.
PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
              'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleBroker]:
    """A broker with its console in read-only mode (``console.read.only``)."""
    cb = start_console_broker(tmp_path_factory.mktemp("read-only") / "data", {"console.read.only": "true"})
    try:
        yield cb
    finally:
        stop_console_broker(cb)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleBroker]:
    """A broker whose only listener is SASL_PLAINTEXT (PLAIN): its console asks for a login."""
    cb = start_console_broker(tmp_path_factory.mktemp("secured") / "data", {
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS})
    try:
        yield cb
    finally:
        stop_console_broker(cb)
