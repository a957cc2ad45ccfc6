"""The synthetic region: a made-up prefecture-level city with districts and a tiered care network.

`build_facilities(n, seed)` lays out n facilities (tertiary hubs, secondary hospitals, primary-care
centres, village clinics, mobile screening units) with parents, coordinates and capabilities. Codes
are deterministic (`HUB-01`, `CNTY-03`, `CHC-012`, `VIL-045`, `MOB-02`) and so are ids (a UUID
derived from the seed, the facility count and the code). The layout's numbers are assumptions kept
in `data/region.yaml`."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from medloop.network.models import Capability, Tier

DATA_DIR = Path(__file__).parent / "data"
_KM_PER_DEGREE = 111.32
# Namespace of the deterministic facility ids (a fixed random UUID, never change it).
_ID_NAMESPACE = uuid.UUID("6f1c2a43-5f8e-4b5e-9a57-0d7c2b8e6a11")


@cache
def load_yaml(name: str) -> dict[str, Any]:
    with (DATA_DIR / name).open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


@dataclass(frozen=True)
class District:
    code: str
    name: str
    kind: str  # urban | county | county_city
    population_share: float
    urban_share: float
    latitude: float
    longitude: float
    radius_km: float

    @property
    def is_urban(self) -> bool:
        return self.kind == "urban"


@dataclass(frozen=True)
class SimFacility:
    id: uuid.UUID
    code: str
    name: str
    tier: str
    parent_code: str | None
    district_code: str
    latitude: float
    longitude: float
    capabilities: tuple[str, ...]
    serves_urban: bool  # residents registered here count as urban

    @property
    def is_home_facility(self) -> bool:
        """Residents register with primary-care centres and village clinics."""
        return self.tier in (Tier.PRIMARY, Tier.VILLAGE_CLINIC)


@dataclass(frozen=True)
class Region:
    seed: int
    province_code: str
    city_code: str
    city_name: str
    north: bool
    districts: tuple[District, ...]
    facilities: tuple[SimFacility, ...]

    def by_code(self) -> dict[str, SimFacility]:
        return {f.code: f for f in self.facilities}


@dataclass(frozen=True)
class HomeTables:
    """Everything the population generator needs to place residents, as NumPy arrays."""

    district_cdf: np.ndarray  # cumulative population share per district
    urban_share: np.ndarray  # per district
    group_offset: np.ndarray  # per group (2 x district + urban)
    group_size: np.ndarray
    flat: np.ndarray  # facility indices, grouped
    fac_lat: np.ndarray
    fac_lon: np.ndarray
    fac_urban: np.ndarray  # bool per facility
    fac_district: np.ndarray  # district index per facility
    district_codes: tuple[str, ...]
    facility_codes: tuple[str, ...]


def home_tables(region: Region) -> HomeTables:
    districts = region.districts
    index = {d.code: i for i, d in enumerate(districts)}
    facilities = region.facilities
    groups: list[list[int]] = []
    for d in districts:
        home = [i for i, f in enumerate(facilities) if f.is_home_facility and f.district_code == d.code]
        if not home:
            raise ValueError(f"district {d.code} has no primary-care facility")
        for urban in (False, True):
            members = [i for i in home if facilities[i].serves_urban == urban]
            groups.append(members or home)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    shares = np.array([d.population_share for d in districts], dtype=np.float64)
    cdf = np.cumsum(shares / shares.sum())
    cdf[-1] = 1.0
    return HomeTables(
        district_cdf=cdf,
        urban_share=np.array([d.urban_share for d in districts], dtype=np.float64),
        group_offset=offsets,
        group_size=sizes,
        flat=np.array([i for g in groups for i in g], dtype=np.int64),
        fac_lat=np.array([f.latitude for f in facilities], dtype=np.float64),
        fac_lon=np.array([f.longitude for f in facilities], dtype=np.float64),
        fac_urban=np.array([f.serves_urban for f in facilities], dtype=bool),
        fac_district=np.array([index[f.district_code] for f in facilities], dtype=np.int64),
        district_codes=tuple(d.code for d in districts),
        facility_codes=tuple(f.code for f in facilities),
    )


def _districts(spec: dict[str, Any]) -> tuple[District, ...]:
    lat0, lon0 = float(spec["city"]["latitude"]), float(spec["city"]["longitude"])
    out = []
    for d in spec["districts"]:
        lat, lon = _offset(lat0, lon0, float(d["east_km"]), float(d["north_km"]))
        out.append(
            District(
                code=str(d["code"]),
                name=str(d["name"]),
                kind=str(d["kind"]),
                population_share=float(d["population_share"]),
                urban_share=float(d["urban_share"]),
                latitude=lat,
                longitude=lon,
                radius_km=float(d["radius_km"]),
            )
        )
    return tuple(out)


def _offset(lat: float, lon: float, east_km: float, north_km: float) -> tuple[float, float]:
    dlat = north_km / _KM_PER_DEGREE
    dlon = east_km / (_KM_PER_DEGREE * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def minimum_facilities() -> int:
    """Smallest facility count the layout accepts: one hub, one mobile unit, one secondary hospital
    per district, one community centre per urban district and two primary centres (county seat and
    a township) per county."""
    districts = _districts(load_yaml("region.yaml"))
    return 2 + len(districts) + sum(1 if d.is_urban else 2 for d in districts)


def default_facility_count(people: int) -> int:
    per = int(load_yaml("region.yaml")["facility_mix"]["residents_per_facility"])
    return max(minimum_facilities(), round(people / per))


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Largest-remainder split of total over weights (deterministic)."""
    if total <= 0 or not weights:
        return [0] * len(weights)
    s = sum(weights)
    raw = [total * w / s for w in weights]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _capabilities(tier: str, rng: np.random.Generator, spec: dict[str, Any]) -> tuple[str, ...]:
    rule = spec["capabilities"][tier]
    caps = list(rule["always"])
    for cap, p in rule.get("sometimes", {}).items():
        if rng.random() < float(p):
            caps.append(cap)
    if Capability.CATH_LAB in caps and Capability.CHEST_PAIN_CENTER not in caps:
        caps.remove(Capability.CATH_LAB)  # a cath lab comes with a chest pain centre
    known = {c.value for c in Capability}
    unknown = set(caps) - known
    if unknown:
        raise ValueError(f"region.yaml names unknown capabilities: {sorted(unknown)}")
    return tuple(sorted(caps))


def build_region(n_facilities: int, seed: int) -> Region:
    spec = load_yaml("region.yaml")
    return Region(
        seed=seed,
        province_code=str(spec["province"]["code"]),
        city_code=str(spec["city"]["code"]),
        city_name=str(spec["city"]["name"]),
        north=bool(spec["province"]["north"]),
        districts=_districts(spec),
        facilities=tuple(build_facilities(n_facilities, seed)),
    )


def build_facilities(n: int, seed: int) -> list[SimFacility]:
    """n facilities of the region, parents before children."""
    spec = load_yaml("region.yaml")
    districts = _districts(spec)
    lowest = minimum_facilities()
    if n < lowest:
        raise ValueError(f"a region needs at least {lowest} facilities ({len(districts)} districts); got {n}")
    mix = spec["facility_mix"]
    names = spec["place_names"]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2260]))
    city = str(spec["city"]["name"])

    hubs_n = 2 if n >= int(mix["two_hubs_from"]) else 1
    mobile_n = max(1, min(int(mix["mobile_units_max"]), n // int(mix["mobile_units_per"])))
    rest = n - hubs_n - mobile_n - len(districts)
    min_primary = [1 if d.is_urban else 2 for d in districts]
    primary_n = max(sum(min_primary), round(rest * float(mix["primary_share_of_rest"])))
    if any(not d.is_urban for d in districts):
        village_n = rest - primary_n
    else:  # no villages anywhere: every remaining facility is a community centre
        primary_n, village_n = rest, 0
    extra = _apportion(primary_n - sum(min_primary), [d.population_share for d in districts])
    primaries = [m + e for m, e in zip(min_primary, extra, strict=True)]
    villages = _apportion(village_n, [0.0 if d.is_urban else d.population_share for d in districts])

    def make_id(code: str) -> uuid.UUID:
        return uuid.uuid5(_ID_NAMESPACE, f"{seed}:{n}:{code}")

    def facility(
        code: str, name: str, tier: Tier, parent: str | None, d: District, lat: float, lon: float, urban: bool
    ) -> SimFacility:
        return SimFacility(
            id=make_id(code),
            code=code,
            name=name,
            tier=tier.value,
            parent_code=parent,
            district_code=d.code,
            latitude=round(lat, 6),
            longitude=round(lon, 6),
            capabilities=_capabilities(tier.value, rng, spec),
            serves_urban=urban,
        )

    def scatter(lat: float, lon: float, radius_km: float) -> tuple[float, float]:
        r = radius_km * math.sqrt(rng.random())
        a = 2 * math.pi * rng.random()
        return _offset(lat, lon, r * math.cos(a), r * math.sin(a))

    out: list[SimFacility] = []
    urban_districts = [d for d in districts if d.is_urban] or list(districts)
    hub_names = [f"{city}第一人民医院", f"{city}中心医院"]
    hubs = []
    for i in range(hubs_n):
        d = urban_districts[i % len(urban_districts)]
        lat, lon = scatter(d.latitude, d.longitude, 1.0)
        hubs.append(facility(f"HUB-{i + 1:02d}", hub_names[i], Tier.TERTIARY_HUB, None, d, lat, lon, True))
    out += hubs

    def nearest(candidates: list[SimFacility], lat: float, lon: float) -> SimFacility:
        return min(candidates, key=lambda f: (f.latitude - lat) ** 2 + (f.longitude - lon) ** 2)

    secondaries = []
    for i, d in enumerate(districts):
        lat, lon = scatter(d.latitude, d.longitude, 1.0)
        parent = nearest(hubs, lat, lon).code
        name = f"{city}{d.name}人民医院" if d.is_urban else f"{d.name}人民医院"
        secondaries.append(facility(f"CNTY-{i + 1:02d}", name, Tier.SECONDARY, parent, d, lat, lon, True))
    out += secondaries

    width_p = max(3, len(str(sum(primaries))))
    width_v = max(3, len(str(sum(villages))))
    streets, towns, village_names = names["streets"], names["towns"], names["villages"]
    chc_no = vil_no = 0
    for d, secondary, n_primary, n_village in zip(districts, secondaries, primaries, villages, strict=True):
        rural_centres: list[tuple[SimFacility, str]] = []
        for j in range(n_primary):
            chc_no += 1
            code = f"CHC-{chc_no:0{width_p}d}"
            if d.is_urban:
                lat, lon = scatter(d.latitude, d.longitude, d.radius_km)
                name = f"{d.name}{streets[(chc_no - 1) % len(streets)]}街道社区卫生服务中心"
                out.append(facility(code, name, Tier.PRIMARY, secondary.code, d, lat, lon, True))
            elif j == 0:  # the county seat's community centre
                lat, lon = scatter(d.latitude, d.longitude, 2.0)
                out.append(
                    facility(
                        code, f"{d.name}城关社区卫生服务中心", Tier.PRIMARY, secondary.code, d, lat, lon, True
                    )
                )
            else:
                lat, lon = scatter(d.latitude, d.longitude, d.radius_km)
                town = towns[(chc_no - 1) % len(towns)]
                centre = facility(
                    code, f"{d.name}{town}镇卫生院", Tier.PRIMARY, secondary.code, d, lat, lon, False
                )
                out.append(centre)
                rural_centres.append((centre, town))
        for k in range(n_village):
            vil_no += 1
            centre, town = rural_centres[k % len(rural_centres)]
            lat, lon = scatter(centre.latitude, centre.longitude, 4.0)
            name = f"{town}镇{village_names[(vil_no - 1) % len(village_names)]}村卫生室"
            code = f"VIL-{vil_no:0{width_v}d}"
            out.append(facility(code, name, Tier.VILLAGE_CLINIC, centre.code, d, lat, lon, False))

    for i in range(mobile_n):
        hub = hubs[i % len(hubs)]
        d = next(x for x in districts if x.code == hub.district_code)
        name = f"{city}流动筛查车{i + 1}号"
        out.append(
            facility(
                f"MOB-{i + 1:02d}", name, Tier.MOBILE_UNIT, hub.code, d, hub.latitude, hub.longitude, True
            )
        )
    assert len(out) == n, (len(out), n)
    return out
