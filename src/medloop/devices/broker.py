"""Mosquitto configuration: password file, ACL and a config snippet (`medloop devices broker-config`).

Device passwords are stored twice, both one-way: argon2id for medloop, and PBKDF2-SHA512 in
Mosquitto's own password-file format (`$7$iterations$salt$hash`, as `mosquitto_passwd` writes it),
so the password file can be written at any time without knowing any password.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

TOPIC_TEMPLATE = "medloop/v1/devices/{serial}/readings"
SUBSCRIPTION = "medloop/v1/devices/+/readings"
INGESTER_USERNAME = "medloop-ingester"
PBKDF2_ITERATIONS = 1000


def mosquitto_hash(password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def topic_for(serial: str) -> str:
    return TOPIC_TEMPLATE.format(serial=serial)


def serial_from_topic(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 5 and parts[:3] == ["medloop", "v1", "devices"] and parts[4] == "readings" and parts[3]:
        return parts[3]
    return None


def acl_text() -> str:
    return (
        "# medloop: the ingester reads every device topic; a device writes only its own topic\n"
        f"user {INGESTER_USERNAME}\n"
        f"topic read {SUBSCRIPTION}\n\n"
        "pattern write medloop/v1/devices/%u/readings\n"
    )


def config_text(password_file: Path, acl_file: Path, *, port: int, persistence_dir: Path | None) -> str:
    lines = [
        "# medloop broker configuration (written by `medloop devices broker-config`)",
        f"listener {port}",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "# QoS 1 with a persistent ingester session: keep every message for it while it is away.",
        "max_queued_messages 0",
        "max_inflight_messages 10000",
    ]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 5"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BrokerFiles:
    password_file: Path
    acl_file: Path
    config_file: Path


def write_broker_files(
    directory: Path,
    entries: list[tuple[str, str]],
    *,
    port: int = 1883,
    persistence_dir: Path | None = None,
) -> BrokerFiles:
    """Write passwd, acl and mosquitto.conf into `directory`. `entries` are (username, hash)."""
    directory.mkdir(parents=True, exist_ok=True)
    passwd, acl, conf = directory / "passwd", directory / "acl", directory / "mosquitto.conf"
    passwd.write_text("".join(f"{user}:{hashed}\n" for user, hashed in entries), encoding="utf-8")
    passwd.chmod(0o600)
    acl.write_text(acl_text(), encoding="utf-8")
    conf.write_text(
        config_text(passwd.resolve(), acl.resolve(), port=port, persistence_dir=persistence_dir),
        encoding="utf-8",
    )
    return BrokerFiles(passwd, acl, conf)
