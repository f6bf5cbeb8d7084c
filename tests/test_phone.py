"""Phone number parsing and display."""

from __future__ import annotations

import pytest

from xmonbridge import phone


@pytest.mark.parametrize(
    "typed,e164",
    [
        ("+81-90-0123-0001", "+819001230001"),
        ("+819001230001", "+819001230001"),
        ("+81-3-1234-0001", "+81312340001"),
        (" +1 415 555 0100 ", "+14155550100"),
    ],
)
def test_it_stores_e164(typed: str, e164: str) -> None:
    assert phone.to_e164(typed) == e164


@pytest.mark.parametrize("typed", ["090-0123-0001", "03-1234-0001", "819001230001"])
def test_it_asks_for_the_country_code(typed: str) -> None:
    with pytest.raises(phone.PhoneNumberError, match="国番号から入力してください"):
        phone.to_e164(typed)


@pytest.mark.parametrize("typed", ["+81-90", "+", "+81-abc-defg", "+999-1234-5678"])
def test_it_refuses_impossible_numbers(typed: str) -> None:
    with pytest.raises(phone.PhoneNumberError, match="形式が正しくありません"):
        phone.to_e164(typed)


@pytest.mark.parametrize(
    "e164,shown",
    [("+819001230001", "+81-90-0123-0001"), ("+81312340001", "+81-3-1234-0001"), (None, ""), ("", "")],
)
def test_it_displays_with_hyphens(e164: str | None, shown: str) -> None:
    assert phone.display(e164) == shown
