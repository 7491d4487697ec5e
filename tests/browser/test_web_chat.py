"""The web page (web/) in headless Chromium against a real server: two people chat in real
time, and text typed by one person never becomes HTML on the other's page.

Uses Debian's Chromium (deploy/local/browser.sh installs it) driven by Playwright's own driver
— no browser download. Without Chromium or Playwright the tests skip, or fail under
PARLEY_REQUIRE_ENGINES=1 (CI), like the real-engine tests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from tests.engines import engines_required
from tests.support.clients import ApiUser
from tests.support.server import RunningServer
from tests.support.world import make_world

if TYPE_CHECKING:
    from playwright.async_api import Browser, Dialog, Locator, Page

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
SEEN_WITHIN_MS = 5000  # "real time": the other page shows a message within this


def require_browser() -> None:
    """Skip when Chromium or Playwright is missing — or fail, when CI says engines are required."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (run deploy/local/browser.sh)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    if not missing:
        return
    message = f"browser tests need {' and '.join(missing)}"
    if engines_required():
        pytest.fail(f"PARLEY_REQUIRE_ENGINES=1 but {message}")
    pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class ChatPage:
    """One person's browser tab, signed in through the login form, with a channel open."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def messages(self) -> Locator:
        return self.page.get_by_role("log", name="Messages")

    async def send(self, channel: str, text: str) -> None:
        composer = self.page.get_by_label(f"Message #{channel}")
        await composer.fill(text)
        await composer.press("Enter")


async def open_channel(browser: Browser, base_url: str, user: ApiUser, channel: str = "general") -> ChatPage:
    context = await browser.new_context(base_url=base_url, viewport={"width": 1200, "height": 720})
    page = await context.new_page()
    chat = ChatPage(page)

    async def record_and_dismiss(dialog: Dialog) -> None:
        # alert() run by injected markup would land here; dismissed so the page never blocks.
        chat.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", record_and_dismiss)
    page.on("pageerror", lambda e: chat.errors.append(str(e)))
    await page.goto("/")
    await page.get_by_label("Username").fill(user.username)
    await page.get_by_label("Password").fill("correct horse")
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("button", name=f"#{channel}").click()
    await page.get_by_label(f"Message #{channel}").wait_for()
    return chat


async def test_message_sent_in_one_browser_appears_in_the_other_and_the_reply_comes_back(
    browser: Browser, server: RunningServer
) -> None:
    from playwright.async_api import expect

    world = await make_world(server.url)
    alice, bob = world.users
    a = await open_channel(browser, server.url, alice)
    b = await open_channel(browser, server.url, bob)

    await a.send("general", "Morning Bob, the deploy is green")
    seen_by_bob = b.messages.get_by_role("listitem").filter(has_text="Morning Bob, the deploy is green")
    await expect(seen_by_bob).to_be_visible(timeout=SEEN_WITHIN_MS)
    await expect(seen_by_bob).to_contain_text(alice.user["display_name"])

    await b.send("general", "Great, thanks Alice!\nShipping it.")
    seen_by_alice = a.messages.get_by_role("listitem").filter(has_text="Great, thanks Alice!")
    await expect(seen_by_alice).to_be_visible(timeout=SEEN_WITHIN_MS)
    await expect(seen_by_alice).to_contain_text("Shipping it.")

    # Each message shows once on each page, and no longer as pending once acknowledged.
    for chat in (a, b):
        await expect(chat.messages.locator(".msg.pending")).to_have_count(0, timeout=SEEN_WITHIN_MS)
        await expect(chat.messages.get_by_role("listitem")).to_have_count(2)
        assert chat.errors == []
    await world.close()


async def test_markup_typed_as_a_message_shows_as_text_and_never_runs(
    browser: Browser, server: RunningServer
) -> None:
    from playwright.async_api import expect

    world = await make_world(server.url)
    alice, bob = world.users
    a = await open_channel(browser, server.url, alice)
    b = await open_channel(browser, server.url, bob)
    payload = "<img src=x onerror=alert(1)>"

    await a.send("general", payload)

    shown = b.messages.locator(".text").filter(has_text=payload)
    await expect(shown).to_have_text(payload, timeout=SEEN_WITHIN_MS)
    assert await b.messages.locator("img").count() == 0
    # Search highlights are the one server-made HTML the page inserts: <mark> only, never the
    # message's own markup. The indexer runs after the send, so wait for the match.
    search = b.page.get_by_label("Search messages")
    results = b.page.locator("#search-results")
    for _ in range(20):
        await search.fill("onerror")
        await search.press("Enter")
        try:
            await expect(results.locator("mark")).to_have_text("onerror", timeout=500)
            break
        except AssertionError:
            continue
    await expect(results).to_contain_text(payload)
    assert await results.locator("img").count() == 0
    assert await b.page.locator("img").count() == 0
    assert a.dialogs == [] and b.dialogs == [], "markup in a message ran script"
    assert a.errors == [] and b.errors == []
    await world.close()
