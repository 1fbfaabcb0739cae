"""A browser for `portcullis login` against the local issuer, in tests: Python's `webbrowser` runs it
(BROWSER="python browser_standin.py %s"). It does what a person does on the issuer's dev-user picker:
open the authorize URL, pick PORTCULLIS_TEST_DEV_USER, and follow the redirect back to the loopback
address azure-identity listens on. The issuer's TLS is trusted through PORTCULLIS_CA_BUNDLE."""

from __future__ import annotations

import html.parser
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


class _Hidden(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        found = dict(attrs)
        if tag == "input" and found.get("type") == "hidden":
            self.fields[found["name"] or ""] = found["value"] or ""


def main(url: str) -> None:
    context = ssl.create_default_context(cafile=os.environ["PORTCULLIS_CA_BUNDLE"])
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())
    with opener.open(url, timeout=10) as page:
        form = _Hidden()
        form.feed(page.read().decode())
    data = urllib.parse.urlencode(
        {**form.fields, "username": os.environ["PORTCULLIS_TEST_DEV_USER"]}
    ).encode()
    try:
        opener.open(urllib.request.Request(url, data=data), timeout=10)
    except urllib.error.HTTPError as redirect:
        location = redirect.headers["Location"]
    else:
        raise SystemExit("the picker did not redirect")
    with urllib.request.urlopen(location, timeout=10) as answer:  # the loopback listener
        answer.read()


if __name__ == "__main__":
    # webbrowser waits for a BROWSER command to exit before MSAL serves its loopback address: answer
    # at once, as a real browser's launcher does, and sign in from a child process.
    if os.environ.get("PORTCULLIS_TEST_BROWSER_CHILD"):
        main(sys.argv[1])
    else:
        env = {**os.environ, "PORTCULLIS_TEST_BROWSER_CHILD": "1"}
        subprocess.Popen([sys.executable, __file__, sys.argv[1]], env=env, start_new_session=True)
