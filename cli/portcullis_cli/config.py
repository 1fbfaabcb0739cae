"""Where the CLI keeps its settings and sign-in, and how the environment overrides them.

`portcullis configure` writes `config.json` in the user's config directory; every setting can be
overridden by an environment variable (CI runners and one-off shells set those instead). The token
cache `token.json` sits beside it, readable by the user only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# The local stack's public client (localrig/devusers.py PUBLIC_CLIENT_ID; a test keeps them equal).
# In Azure, configure --client-id with the public client app registration users sign in with.
DEFAULT_CLIENT_ID = "c11c11c1-0000-4000-8000-000000000005"

# setting -> the environment variable that overrides it
ENVIRONMENT = {
    "endpoint": "PORTCULLIS_ENDPOINT",
    "audience": "PORTCULLIS_AUDIENCE",
    "authority": "PORTCULLIS_AUTHORITY",
    "ca_bundle": "PORTCULLIS_CA_BUNDLE",
    "client_id": "PORTCULLIS_CLIENT_ID",
    "output": "PORTCULLIS_OUTPUT",
}
CONFIG_DIR_VARIABLE = "PORTCULLIS_CONFIG_DIR"
TOKEN_VARIABLE = "PORTCULLIS_TOKEN"  # noqa: S105 - a bearer token used as it is (a pipeline's own); no login needed


@dataclass
class Config:
    endpoint: str | None = None  # the app, e.g. https://portcullis.azurewebsites.net (with or without /api)
    audience: str | None = None  # the app's Entra ID audience, e.g. api://portcullis
    authority: str | None = None  # https://login.microsoftonline.com/<tenant>, or the local issuer's
    ca_bundle: str | None = None  # a CA file to trust (the local stack's); unset: the system's CAs
    client_id: str | None = None  # the public client to sign in with (dev users and the browser)
    output: str | None = None  # the default --output

    @property
    def api_url(self) -> str:
        if not self.endpoint:
            raise LookupError(
                "no endpoint: run `portcullis configure --endpoint URL` or set PORTCULLIS_ENDPOINT"
            )
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/api") else f"{base}/api"

    @property
    def verify(self) -> str | bool:
        """What requests' `verify` takes: the CA file when one is configured."""
        return self.ca_bundle or True

    @property
    def effective_client_id(self) -> str:
        return self.client_id or DEFAULT_CLIENT_ID

    @property
    def scope(self) -> str:
        if not self.audience:
            raise LookupError(
                "no audience: run `portcullis configure --audience api://...` or set PORTCULLIS_AUDIENCE"
            )
        return f"{self.audience.rstrip('/')}/.default"


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(CONFIG_DIR_VARIABLE):
        return Path(env[CONFIG_DIR_VARIABLE])
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "portcullis"
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "portcullis"


def load(env: Mapping[str, str] | None = None) -> Config:
    """The config file, then the environment on top (a set variable wins)."""
    env = os.environ if env is None else env
    stored = read_json(config_dir(env) / "config.json")
    known = {field.name for field in fields(Config)}
    config = Config(**{key: value for key, value in stored.items() if key in known})
    for name, variable in ENVIRONMENT.items():
        if env.get(variable):
            setattr(config, name, env[variable])
    return config


def save(changes: Mapping[str, str | None], env: Mapping[str, str] | None = None) -> Config:
    """Write the given settings into the config file (an empty string removes one); the file alone,
    without the environment's overrides."""
    path = config_dir(env) / "config.json"
    stored = {key: value for key, value in asdict(Config(**read_json(path))).items() if value}
    for key, value in changes.items():
        if value == "":
            stored.pop(key, None)
        elif value is not None:
            stored[key] = value
    write_json(path, stored)
    return Config(**stored)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise LookupError(f"{path} cannot be read ({error}): fix or delete it") from None
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: Mapping[str, Any], private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with os.fdopen(os.open(temporary, flags, 0o600 if private else 0o644), "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    temporary.replace(path)
