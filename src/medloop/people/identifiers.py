"""National ID (PRC resident identity card, GB 11643-1999) validation, keyed hashing and masking.
The number itself is never stored: only HMAC-SHA256 under `MEDLOOP_IDENTIFIER_KEY` (for
de-duplication and look-up) and a masked display form."""

from __future__ import annotations

import hashlib
import hmac

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def national_id_check_char(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def normalise_national_id(value: str) -> str:
    """Upper-cased 18-character number, or ValueError saying what is wrong."""
    v = value.strip().upper()
    if len(v) != 18 or not v[:17].isdigit() or not (v[17].isdigit() or v[17] == "X"):
        raise ValueError("national ID must be 17 digits followed by a digit or X")
    if national_id_check_char(v[:17]) != v[17]:
        raise ValueError("national ID check character does not match")
    return v


def hash_identifier(value: str, key: str) -> str:
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def mask_national_id(value: str) -> str:
    """Keep the region (first 4) and the last 4 characters: 1101**********123X."""
    return value[:4] + "*" * 10 + value[-4:]


def mrn_key(organisation_id: object, mrn: str) -> str:
    return f"{organisation_id}:{mrn.strip()}"
