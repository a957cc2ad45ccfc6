"""The interface languages: message catalogues (`i18n/{en,zh}.yaml`) and the choice of language
(`?lang=` sets a cookie; otherwise the cookie, then Accept-Language, then English)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from starlette.requests import Request

CATALOGUE_DIR = Path(__file__).parent / "i18n"
LANGUAGES = {"en": "English", "zh": "简体中文"}
HTML_LANG = {"en": "en", "zh": "zh-Hans"}
DEFAULT = "en"
COOKIE = "medloop_lang"


@cache
def catalogue(lang: str) -> dict[str, str]:
    with (CATALOGUE_DIR / f"{lang}.yaml").open(encoding="utf-8") as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    return {str(k): str(v) for k, v in doc.items()}


def chosen(request: Request) -> str:
    """The language of this request."""
    for value in (request.query_params.get("lang"), request.cookies.get(COOKIE)):
        if value in LANGUAGES:
            return value
    accept = request.headers.get("accept-language", "").lower()
    return "zh" if accept.startswith("zh") else DEFAULT


class Translator:
    """`t("key")` in templates; `t("key", n=3)` fills `{n}`. A missing key falls back to English,
    then to the key itself (so a gap shows, rather than breaking the page)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.messages = catalogue(lang)
        self.fallback = catalogue(DEFAULT)

    def __call__(self, key: str, **values: Any) -> str:
        text = self.messages.get(key) or self.fallback.get(key) or key
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self.messages or key in self.fallback
