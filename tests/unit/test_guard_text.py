"""check_values on text (pure logic: no server): ASCII text without NUL passes without the full
text check; anything else still gets it, in a column and in a text array alike."""

from __future__ import annotations

import pytest

from leaddb.errors import InvalidValueError
from leaddb.repositories.guard import check_values


def _check(**values: object) -> None:
    check_values("lead", values, max_json_bytes=1_000, max_json_depth=4)


@pytest.mark.parametrize(
    "text", ["plain", "", "Zoë Ångström", "名前", "emoji \U0001f600", "back\\u0000slash"]
)
def test_storable_text_passes_in_a_column_and_in_an_array(text: str) -> None:
    _check(first_name=text, tags=["a", text])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nul\x00byte", "NUL"),
        ("\x00", "NUL"),
        ("é\x00", "NUL"),
        ("lone \ud800 surrogate", "surrogate"),
        ("\udfff", "surrogate"),
    ],
)
def test_unstorable_text_is_refused_in_a_column_and_in_an_array(text: str, message: str) -> None:
    with pytest.raises(InvalidValueError, match=message) as column:
        _check(email="a@example.com", first_name=text)
    assert column.value.field == "first_name"
    with pytest.raises(InvalidValueError, match=message) as array:
        _check(tags=["fine", text])
    assert array.value.field == "tags"
