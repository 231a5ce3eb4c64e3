"""The chat page in a real browser: Playwright driving the system Chromium."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports test files without it
from serve_fixtures import MODEL_NAME, SlowModel, nano_model, tokenizer  # noqa: E402

from llmnotes.serve import BackgroundServer, create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[1] / "out" / "screenshots"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")


class LogLines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        import json

        msg = record.getMessage()
        if msg.startswith("{"):
            self.lines.append(json.loads(msg))


@pytest.fixture(scope="module")
def served():
    slow = SlowModel(nano_model(block_size=256), delay=0.03)  # ~30 tokens/s: time to press Stop
    handler = LogLines()
    logger = logging.getLogger("llmnotes.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    app = create_app(slow, tokenizer(), model_name=MODEL_NAME, api_key="page-key")
    with BackgroundServer(app) as srv, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield srv, browser, handler, slow
        finally:
            browser.close()
            logger.removeHandler(handler)


def open_chat(srv, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    page.goto(srv.url + "/")
    # The page asks /v1/models for the model name; without the key the server says 401.
    sync_api.expect(page.locator("#model")).to_have_text("API key needed")
    page.fill("#api-key", "page-key")
    page.dispatch_event("#api-key", "change")
    sync_api.expect(page.locator("#model")).to_have_text(MODEL_NAME)
    return page


def test_chat_streams_and_stop_aborts(served):
    srv, browser, handler, slow = served
    page = open_chat(srv, browser)
    page.fill("#max-tokens", "200")
    page.fill("#input", "Tell me a long story.")
    page.press("#input", "Enter")
    bubble = page.locator(".msg.assistant").last
    # Streamed text appears while the reply is still being written.
    page.wait_for_function("() => { const m = document.querySelector('.msg.assistant.streaming');"
                           " return m && m.textContent.length >= 5; }", timeout=15_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "chat-streaming.png"))
    sync_api.expect(page.locator("#stop")).to_be_enabled()
    page.click("#stop")
    sync_api.expect(bubble.locator(".meta")).to_contain_text("stopped")
    sync_api.expect(page.locator("#stop")).to_be_disabled()
    sync_api.expect(page.locator("#send")).to_be_enabled()
    page.screenshot(path=str(SHOTS / "chat-stopped.png"))
    # The server saw the closed connection and stopped generating long before 200 tokens.
    page.wait_for_timeout(500)
    stopped = [x for x in handler.lines if x["status"] == 499]
    assert stopped and stopped[-1]["finish_reason"] == "cancelled"
    assert stopped[-1]["completion_tokens"] < 150
    calls = slow.forward_calls
    page.wait_for_timeout(300)
    assert slow.forward_calls == calls
    page.close()


def test_chat_reply_completes_with_usage(served):
    srv, browser, handler, _ = served
    page = open_chat(srv, browser)
    page.fill("#max-tokens", "6")
    page.fill("#input", "Hi!")
    page.press("#input", "Enter")
    meta = page.locator(".msg.assistant .meta").last
    sync_api.expect(meta).to_contain_text("tokens", timeout=15_000)  # "<prompt> + <n> tokens" from usage
    assert handler.lines[-1]["status"] == 200 and handler.lines[-1]["completion_tokens"] <= 6
    assert page.locator(".msg.user").first.text_content() == "Hi!"
    page.screenshot(path=str(SHOTS / "chat.png"))
    page.close()
