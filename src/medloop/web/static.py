"""Static assets: our own CSS and JavaScript (`static/`), and Plotly's bundle served straight from
the installed `plotly` package (no CDN: the machines this runs on may have no internet)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from fastapi.responses import FileResponse

from medloop.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
PLOTLY = "plotly.min.js"


@cache
def plotly_bundle() -> Path:
    path = Path(str(resources.files("plotly").joinpath("package_data", PLOTLY)))
    if not path.is_file():
        raise NotFound("plotly.min.js is missing from the installed plotly package")
    return path


@cache
def _own_assets() -> dict[str, Path]:
    return {p.name: p for p in STATIC_DIR.iterdir() if p.suffix in MEDIA_TYPES}


def response(name: str) -> FileResponse:
    """The named asset, cacheable for a day (names are fixed: only known files are served)."""
    path = plotly_bundle() if name == PLOTLY else _own_assets().get(name)
    if path is None:
        raise NotFound(f"no static asset {name!r}")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
