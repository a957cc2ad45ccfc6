"""The synthetic care network: tiers, capabilities, parents, codes, coordinates, determinism."""

from __future__ import annotations

import math
import re

import pytest

from medloop.network.models import Tier
from medloop.sim.region import build_facilities, build_region, default_facility_count, minimum_facilities

HUB_CAPS = {
    "chest_pain_center",
    "cath_lab",
    "ldct",
    "oncology_mdt",
    "lab",
    "endoscopy",
    "spirometry",
    "pulmonary_rehab",
    "ecg",
    "mmc",
}
CODE = {
    Tier.TERTIARY_HUB: r"HUB-\d{2}",
    Tier.SECONDARY: r"CNTY-\d{2}",
    Tier.PRIMARY: r"CHC-\d{3,}",
    Tier.VILLAGE_CLINIC: r"VIL-\d{3,}",
    Tier.MOBILE_UNIT: r"MOB-\d{2}",
}


@pytest.fixture(scope="module")
def facilities() -> list:
    return build_facilities(400, seed=3)


def test_count_codes_and_ids_are_unique(facilities: list) -> None:
    assert len(facilities) == 400
    assert len({f.code for f in facilities}) == 400
    assert len({f.id for f in facilities}) == 400
    for f in facilities:
        assert re.fullmatch(CODE[Tier(f.tier)], f.code), f.code


def test_every_tier_is_present(facilities: list) -> None:
    tiers = {f.tier for f in facilities}
    assert tiers == {t.value for t in Tier}
    assert sum(f.tier == Tier.TERTIARY_HUB for f in facilities) == 2
    assert sum(f.tier == Tier.VILLAGE_CLINIC for f in facilities) > sum(
        f.tier == Tier.PRIMARY for f in facilities
    )


def test_capability_mix(facilities: list) -> None:
    for f in facilities:
        caps = set(f.capabilities)
        if f.tier == Tier.TERTIARY_HUB:
            assert caps == HUB_CAPS
        elif f.tier == Tier.SECONDARY:
            assert {"lab", "ecg", "spirometry"} <= caps <= HUB_CAPS
            assert "cath_lab" not in caps or "chest_pain_center" in caps
        elif f.tier == Tier.PRIMARY:
            assert {"primary_care", "ecg", "lab"} <= caps <= {"primary_care", "ecg", "lab", "spirometry"}
        elif f.tier == Tier.VILLAGE_CLINIC:
            assert caps == {"primary_care"}
        else:
            assert caps == {"ldct", "spirometry", "ecg"}
    primary = [f for f in facilities if f.tier == Tier.PRIMARY]
    assert 0 < sum("spirometry" in f.capabilities for f in primary) < len(primary)


def test_parent_chain_reaches_a_hub(facilities: list) -> None:
    by_code = {f.code: f for f in facilities}
    expected_parent = {
        Tier.VILLAGE_CLINIC: Tier.PRIMARY,
        Tier.PRIMARY: Tier.SECONDARY,
        Tier.SECONDARY: Tier.TERTIARY_HUB,
        Tier.MOBILE_UNIT: Tier.TERTIARY_HUB,
    }
    for f in facilities:
        if f.tier == Tier.TERTIARY_HUB:
            assert f.parent_code is None
            continue
        parent = by_code[f.parent_code]
        assert parent.tier == expected_parent[Tier(f.tier)]
        if f.tier != Tier.MOBILE_UNIT and parent.tier != Tier.TERTIARY_HUB:
            assert parent.district_code == f.district_code
    # parents are listed first, so the rows can be inserted in this order
    order = {f.code: i for i, f in enumerate(facilities)}
    assert all(order[f.parent_code] < order[f.code] for f in facilities if f.parent_code)


def test_coordinates_are_around_the_city(facilities: list) -> None:
    region = build_region(400, seed=3)
    lat0 = sum(d.latitude for d in region.districts) / len(region.districts)
    lon0 = sum(d.longitude for d in region.districts) / len(region.districts)
    for f in facilities:
        dy = (f.latitude - lat0) * 111.3
        dx = (f.longitude - lon0) * 111.3 * math.cos(math.radians(lat0))
        assert math.hypot(dx, dy) < 120, f.code
    assert len({(f.latitude, f.longitude) for f in facilities if f.tier != Tier.MOBILE_UNIT}) > 300


def test_gb2260_style_codes() -> None:
    region = build_region(50, seed=1)
    assert re.fullmatch(r"\d{2}0000", region.province_code)
    assert region.city_code == region.province_code[:2] + region.city_code[2:4] + "00"
    for d in region.districts:
        assert re.fullmatch(r"\d{6}", d.code) and d.code[:4] == region.city_code[:4]
    assert abs(sum(d.population_share for d in region.districts) - 1) < 1e-9


def test_deterministic_for_a_seed() -> None:
    assert build_facilities(100, 9) == build_facilities(100, 9)
    other = build_facilities(100, 10)
    assert [f.code for f in other] == [f.code for f in build_facilities(100, 9)]
    assert [f.id for f in other] != [f.id for f in build_facilities(100, 9)]


def test_too_few_facilities_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least"):
        build_facilities(minimum_facilities() - 1, 1)
    assert len(build_facilities(minimum_facilities(), 1)) == minimum_facilities()


def test_default_facility_count_scales_with_people() -> None:
    assert default_facility_count(10) == minimum_facilities()
    assert default_facility_count(1_000_000) == 1250
