"""The browser reaches the live server: logging into the admin."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from tests.support.processes import PolosServer

PASSWORD = "a long enough password"


def test_admin_login_in_the_browser(page: Page, polos_server: PolosServer) -> None:
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)

    page.goto(f"{polos_server.base_url}/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")

    expect(page).to_have_title("Site administration | Django site admin")
    expect(page.locator("#user-tools")).to_contain_text("boss")
