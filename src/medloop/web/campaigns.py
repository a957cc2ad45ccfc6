"""Screening campaigns from the browser: an uploaded population file (CSV or Parquet) is screened
by a background job on the local engine, batch by batch, so the page can poll its progress; the
results are summarised per model and category, and the referral list can be downloaded.

A table keyed by `patient_id` is completed from the patient records and stored as risk
assessments (within the uploader's facility scope, every write audited by the screening service);
a table keyed by `person_id` is screened without touching the database."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from medloop.auth.principal import Principal
from medloop.errors import BadRequest, NotFound, Problem
from medloop.network.routing import Network
from medloop.screening.engine import Summary, local_results, make_plan, select_models
from medloop.screening.frames import FrameWriter, InputError, file_format, open_source
from medloop.screening.referrals import Referrals
from medloop.screening.service import KEY as PATIENT_KEY
from medloop.screening.service import DatabasePopulation, plan_for_patients
from medloop.store.base import utcnow

log = logging.getLogger("medloop.web.campaigns")

BATCH_ROWS = 20_000
KEEP_CAMPAIGNS = 50


@dataclass
class Campaign:
    id: str
    owner: str
    filename: str
    directory: Path
    input: Path
    store: bool
    status: str = "queued"  # queued | running | done | failed | cancelled
    total_rows: int | None = None
    processed: int = 0
    summary: list[tuple[str, str, int]] = field(default_factory=list)
    disabled: dict[str, tuple[str, ...]] = field(default_factory=dict)
    referrals: int = 0
    stored: int = 0
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None

    @property
    def referral_file(self) -> Path:
        return self.directory / "referrals.csv"

    @property
    def progress(self) -> float | None:
        if self.status == "done":
            return 1.0
        return min(1.0, self.processed / self.total_rows) if self.total_rows else None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "status": self.status,
            "filename": self.filename,
            "total_rows": self.total_rows,
            "processed": self.processed,
            "progress": self.progress,
            "referrals": self.referrals,
            "stored": self.stored,
            "error": self.error,
            "summary": [{"model": m, "category": c, "count": n} for m, c, n in self.summary],
        }


def _count_csv_rows(path: Path) -> int:
    with path.open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        f.seek(-1, 2)
        ends_with_newline = f.read(1) == b"\n"
    return max(0, lines - 1 + (0 if ends_with_newline else 1))


class CampaignRunner:
    """Runs campaigns one at a time on a background thread; keeps the most recent ones in memory
    with their files in a temporary directory."""

    def __init__(self, sessions: sessionmaker[Session], root: Path | None = None) -> None:
        self.sessions = sessions
        self.root = root or Path(tempfile.mkdtemp(prefix="medloop-campaigns-"))
        self.campaigns: dict[str, Campaign] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def submit(self, principal: Principal, filename: str, data: bytes, store: bool) -> Campaign:
        name = Path(filename or "population.csv").name
        try:
            suffix = "." + file_format(Path(name))
        except Problem:
            raise BadRequest("upload a .csv or .parquet population file") from None
        if not data:
            raise BadRequest("the uploaded file is empty")
        campaign_id = uuid.uuid4().hex[:12]
        directory = self.root / campaign_id
        directory.mkdir(parents=True)
        path = directory / f"input{suffix}"
        path.write_bytes(data)
        campaign = Campaign(campaign_id, principal.username, name, directory, path, store)
        with self._lock:
            self._forget_old()
            self.campaigns[campaign_id] = campaign
        thread = threading.Thread(
            target=self._run, args=(campaign, principal), name=f"campaign-{campaign_id}", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return campaign

    def get(self, principal: Principal, campaign_id: str) -> Campaign:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None or not (principal.unrestricted or campaign.owner == principal.username):
            raise NotFound("no such screening campaign")
        return campaign

    def mine(self, principal: Principal) -> list[Campaign]:
        rows = [c for c in self.campaigns.values() if principal.unrestricted or c.owner == principal.username]
        return sorted(rows, key=lambda c: c.created_at, reverse=True)

    def wait(self, timeout: float = 60.0) -> None:
        for thread in list(self._threads):
            thread.join(timeout)

    def close(self) -> None:
        self._stop.set()
        self.wait(10.0)
        shutil.rmtree(self.root, ignore_errors=True)

    def _forget_old(self) -> None:
        finished = sorted(
            (c for c in self.campaigns.values() if c.finished_at is not None), key=lambda c: c.created_at
        )
        for old in finished[: max(0, len(self.campaigns) - KEEP_CAMPAIGNS + 1)]:
            self.campaigns.pop(old.id, None)
            shutil.rmtree(old.directory, ignore_errors=True)

    def _run(self, campaign: Campaign, principal: Principal) -> None:
        campaign.status = "running"
        try:
            self._screen(campaign, principal)
            campaign.status = "cancelled" if self._stop.is_set() else "done"
        except Problem as exc:
            campaign.status, campaign.error = "failed", exc.detail
        except Exception as exc:  # the job must end with a status, whatever happened
            log.error(
                "screening campaign failed", extra={"campaign": campaign.id, "error_type": type(exc).__name__}
            )
            campaign.status, campaign.error = "failed", "internal error; it has been logged"
        finally:
            campaign.finished_at = utcnow()

    def _screen(self, campaign: Campaign, principal: Principal) -> None:
        source = open_source(campaign.input)
        campaign.total_rows = source.rows if source.rows is not None else _count_csv_rows(campaign.input)
        models = select_models(None)
        keyed_by_patient = PATIENT_KEY in source.columns
        if campaign.store and not keyed_by_patient:
            raise InputError(f"storing results needs a {PATIENT_KEY} column (the database's patient ids)")
        plan = (
            plan_for_patients(source.columns, models)
            if keyed_by_patient
            else make_plan(source.columns, models)
        )
        campaign.disabled = dict(plan.disabled)
        summary = Summary(plan.models)
        with self.sessions() as session, FrameWriter(campaign.referral_file) as referral_writer:
            db = (
                DatabasePopulation(session, principal, utcnow().date(), f"campaign:{campaign.id}")
                if keyed_by_patient
                else None
            )
            referrals = Referrals(plan, Network.load(session))
            wrote = False
            for results in local_results(source, plan, BATCH_ROWS, prepare=db.prepare if db else None):
                if self._stop.is_set():
                    session.rollback()
                    return
                summary.add(results)
                routed = referrals.of(results)
                referral_writer.write(routed)
                wrote = True
                campaign.referrals += routed.height
                if db is not None and campaign.store:
                    campaign.stored += db.store(results, plan.models)
                campaign.processed += results.height
                campaign.summary = summary.table()
            if not wrote:
                raise InputError(f"{campaign.filename} has no rows")
            session.commit()
        campaign.total_rows = campaign.processed
        campaign.summary = summary.table()
