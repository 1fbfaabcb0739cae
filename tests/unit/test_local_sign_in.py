"""The local stack's sign-in choices, pure: which mode PORTCULLIS_LOCAL_AUTH picks (anything but
jwt|headers is refused, naming the variable), and which browser origins and redirect URIs the local
issuer treats as this machine's."""

from __future__ import annotations

import pytest

from localrig.oidc import cors_allowed, on_this_machine
from localrig.stack import LocalAuth, local_auth

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "mode"),
    [(None, LocalAuth.JWT), ("", LocalAuth.JWT), ("jwt", LocalAuth.JWT), (" Headers ", LocalAuth.HEADERS)],
)
def test_the_mode_defaults_to_jwt(value: str | None, mode: LocalAuth) -> None:
    env = {} if value is None else {"PORTCULLIS_LOCAL_AUTH": value}
    assert local_auth(env) is mode


@pytest.mark.parametrize("value", ["easyauth", "none", "jwt,headers"])
def test_another_mode_is_refused_naming_the_variable_and_the_choices(value: str) -> None:
    with pytest.raises(ValueError, match=r"PORTCULLIS_LOCAL_AUTH=.*use jwt or headers"):
        local_auth({"PORTCULLIS_LOCAL_AUTH": value})


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1:5173", True),
        ("http://localhost", True),
        ("https://[::1]:8080", True),
        ("http://127.0.0.1.evil.example", False),
        ("http://localhost:99999", False),
        ("http://user@localhost:1", False),
        ("file://localhost", False),
        ("null", False),
        ("http://localhost:3000/page", False),  # an origin has no path
    ],
)
def test_cors_is_for_pages_on_this_machine(origin: str, allowed: bool) -> None:
    assert cors_allowed(origin) is allowed


def test_redirect_uris_must_be_loopback() -> None:
    assert on_this_machine("http://localhost:53117/callback?x=1")
    assert not on_this_machine("https://evil.example/callback")
    assert not on_this_machine("ftp://127.0.0.1/")
