"""Which config keys hold secrets (masked in every output) and which only say where one lives."""

from __future__ import annotations

import pytest

from bandit.config import is_secret_key


@pytest.mark.parametrize(
    "name", ["sasl_plain_password", "ssl_password", "api_key", "token", "client_secret", "key"]
)
def test_keys_naming_a_secret_are_secret(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name", ["signing_key_file", "ssl_keyfile", "ssl_cafile", "keytab_path", "bootstrap_servers"]
)
def test_keys_naming_where_a_secret_lives_or_nothing_secret_are_not(name: str) -> None:
    assert not is_secret_key(name)
