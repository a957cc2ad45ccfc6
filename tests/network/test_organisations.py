"""Organisations: listing with filters, and routing to the nearest capable facility."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from medloop.network.routing import Network, haversine_km
from tests.factories import World, auth


def test_filters(client: TestClient) -> None:
    headers = auth(client, "partner")

    def codes(**p: str) -> list[str]:
        r = client.get("/api/v1/organisations", headers=headers, params=p)
        return [o["code"] for o in r.json()["items"]]

    assert codes(tier="primary") == ["CHC-A1", "CHC-A2", "CHC-B1"]
    assert codes(capability="ldct") == ["CNTY-B", "HUB"]
    assert codes(district_code="330127") == ["CHC-B1", "CNTY-B"]
    assert codes(name="HUB") == ["HUB"]
    assert client.get("/api/v1/organisations", headers=headers, params={"tier": "castle"}).status_code == 422


def test_haversine_known_distance() -> None:
    # Beijing (39.9042, 116.4074) to Shanghai (31.2304, 121.4737): about 1,067 km great-circle.
    assert haversine_km(39.9042, 116.4074, 31.2304, 121.4737) == pytest.approx(1067, abs=5)


@pytest.mark.parametrize(
    ("lat", "lon", "capability", "expected"),
    [
        (29.56, 118.91, "ldct", "CNTY-B"),
        (30.01, 119.91, "ldct", "HUB"),
        (30.01, 119.91, "spirometry", "CNTY-A"),
        (30.11, 119.79, "primary_care", "CHC-A2"),
        (29.56, 118.91, "cath_lab", "HUB"),
        (30.0, 120.0, "endoscopy", None),
    ],
)
def test_nearest_with_capability(
    session: Session, world: World, lat: float, lon: float, capability: str, expected: str | None
) -> None:
    route = Network.load(session).nearest(lat, lon, capability)
    assert (route.facility.code if route else None) == expected
