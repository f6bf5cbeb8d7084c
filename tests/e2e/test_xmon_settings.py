"""X-MON 設定 in a real browser: where 3# acknowledgements go (R12) and the per-number limits (B8).

The page shows only the fields of the chosen 認知済みの通知先 (xmon_settings.js); a command
file that is not a FIFO is refused on save, and the token is never shown again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import running_server
from tests.e2e.test_notify_settings import flash, log_in, side_menu

Shot = Callable[[Page, str], Path]
TOKEN = "monitor-e2e-token-42"


@pytest.fixture(scope="module")
def settings_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An app of its own: the settings changed here must not reach other browser tests."""
    with running_server(request, tmp_path_factory, "xmon-settings") as base:
        yield base


def test_acknowledgement_sink_and_limits(
    page: Page, settings_server: str, credentials: dict[str, str], shot: Shot, tmp_path: Path
) -> None:
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo)
    regular = tmp_path / "status.dat"
    regular.write_text("")

    log_in(page, settings_server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="X-MON 設定").click()
    page.get_by_label("X-MON URL", exact=True).fill("https://xmon.example.com")
    command_file = page.get_by_label("外部コマンドファイル", exact=True)
    http_url = page.get_by_label("通知先 URL", exact=True)
    token = page.get_by_label("通知先のトークン", exact=True)

    # 送らない: neither sink's fields are shown; the limits have their defaults.
    expect(page.get_by_label("送らない", exact=True)).to_be_checked()
    expect(command_file).to_be_hidden()
    expect(http_url).to_be_hidden()
    expect(page.get_by_label("同じ番号への発信の上限(15 分あたり)", exact=True)).to_have_value("6")
    expect(page.get_by_label("同じ番号への発信の上限(1 時間あたり)", exact=True)).to_have_value("20")
    expect(page.get_by_text("迷惑電話と判定されて発信元の番号が止められるのを防ぎます").first).to_be_visible()
    shot(page, "xmon_settings_defaults")

    # The command file: a regular file is refused, the field stays visible with the reason.
    page.get_by_label("Nagios の外部コマンドファイルに書き込む", exact=True).check()
    expect(command_file).to_be_visible()
    expect(http_url).to_be_hidden()
    command_file.fill(str(regular))
    page.get_by_role("button", name="設定を反映").click()
    expect(page.locator("#ack_command_file-error")).to_have_text(
        f"外部コマンドファイル {regular} が FIFO ではありません(Nagios の command_file を指定してください)。"
    )
    expect(command_file).to_be_visible()
    expect(http_url).to_be_hidden()
    shot(page, "xmon_settings_not_a_fifo")
    command_file.fill(str(fifo))
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("X-MON 設定を反映しました。")
    expect(page.get_by_label("Nagios の外部コマンドファイルに書き込む", exact=True)).to_be_checked()
    expect(command_file).to_have_value(str(fifo))

    # HTTP with a bearer token and limits of its own; the 1-hour limit may not be below the 15-minute one.
    page.get_by_label("HTTP で POST する", exact=True).check()
    expect(command_file).to_be_hidden()
    http_url.fill("https://monitor.example.com/acknowledgements")
    token.fill(TOKEN)
    page.get_by_label("同じ番号への発信の上限(15 分あたり)", exact=True).fill("8")
    page.get_by_label("同じ番号への発信の上限(1 時間あたり)", exact=True).fill("7")
    page.get_by_role("button", name="設定を反映").click()
    expect(page.locator("#calls_per_hour-error")).to_have_text("1 時間あたりの上限は 15 分あたりの上限以上にしてください。")
    expect(token).to_have_value("")  # a refused form does not send the token back either
    token.fill(TOKEN)
    page.get_by_label("同じ番号への発信の上限(1 時間あたり)", exact=True).fill("30")
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("X-MON 設定を反映しました。")
    expect(page.get_by_text("空欄のままにすると変更しません。", exact=False)).to_be_visible()
    expect(page.get_by_label("保存されているトークンを削除する", exact=True)).to_be_visible()
    expect(token).to_have_value("")
    assert TOKEN not in page.content()
    shot(page, "xmon_settings_http_with_token")

    # Removing the token.
    page.get_by_label("保存されているトークンを削除する", exact=True).check()
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("X-MON 設定を反映しました。")
    expect(page.get_by_label("保存されているトークンを削除する", exact=True)).to_have_count(0)
    expect(page.get_by_label("同じ番号への発信の上限(1 時間あたり)", exact=True)).to_have_value("30")
