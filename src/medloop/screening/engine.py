"""The population screening engine: which models can run on a table, batches through the models,
and what comes out (results, counts per category, referrals).

The local runner reads the input in bounded batches, so memory stays flat however large the
input; the Dask runner (`medloop.screening.dask_runner`) evaluates partitions on a cluster and
feeds the same consumers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import polars as pl

from medloop.clinical.catalogue import MODELS, POPULATION_DEFAULT
from medloop.clinical.scoring import STATUSES, Model, evaluate
from medloop.errors import BadRequest
from medloop.screening.contract import KEY, PATIENT_KEY, ROUTING
from medloop.screening.frames import InputError, Source, normalise

KEYS = (KEY, PATIENT_KEY.name)  # a population table is keyed by person_id, or patient_id for the database
ROUTING_NAMES = tuple(c.name for c in ROUTING)
DEFAULT_BATCH_ROWS = 500_000


@dataclass(frozen=True)
class Plan:
    """What a run does with a table: its key, the models that can run, those disabled for lack of
    columns, and the columns to read."""

    key: str
    models: tuple[Model, ...]
    disabled: dict[str, tuple[str, ...]]  # model → its missing required columns
    columns: tuple[str, ...]  # to read from the input: key, model inputs, routing
    keep: tuple[str, ...]  # carried into results: key and routing columns

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def output_columns(self) -> list[str]:
        return [self.key, *(c for m in self.models for c in m.columns())]


def select_models(names: Sequence[str] | None) -> tuple[Model, ...]:
    """The models named (all population models when None); unknown names are a bad request."""
    chosen = list(names) if names else list(POPULATION_DEFAULT)
    unknown = [n for n in chosen if n not in MODELS]
    if unknown:
        raise BadRequest(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(MODELS)}")
    return tuple(MODELS[n] for n in dict.fromkeys(chosen))


def make_plan(available: Iterable[str], models: Sequence[Model], key: str | None = None) -> Plan:
    """Plan a run over a table with the `available` columns."""
    have = set(available)
    if key is None:
        key = next((k for k in KEYS if k in have), None)
        if key is None:
            raise InputError(f"the input has no key column; add {' or '.join(KEYS)}")
    elif key not in have:
        raise InputError(f"the input has no key column {key!r}")
    runnable, disabled = [], {}
    for model in models:
        lacking = tuple(c for c in model.required if c not in have)
        if lacking:
            disabled[model.name] = lacking
        else:
            runnable.append(model)
    if not runnable:
        detail = "; ".join(f"{m}: {', '.join(c)}" for m, c in disabled.items())
        raise InputError(f"no model can run: the input lacks required columns ({detail})")
    inputs = {f for m in runnable for f in m.inputs if f in have}
    routing = tuple(c for c in ROUTING_NAMES if c in have)
    columns = (key, *sorted(inputs), *routing)
    return Plan(key, tuple(runnable), disabled, columns, (key, *routing))


def local_results(
    source: Source,
    plan: Plan,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    prepare: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> Iterator[pl.DataFrame]:
    """Results batch by batch, in input order. `prepare` may complete each typed batch (e.g. with
    age and sex from the patient records) before the models run."""
    readable = [c for c in plan.columns if c in source.columns]
    first = 1
    for raw in source.batches(readable, batch_rows):
        where = f"rows {first}–{first + raw.height - 1} of {source.path.name}"
        frame = normalise(raw, readable, where)
        if prepare is not None:
            frame = prepare(frame)
        yield evaluate(frame, plan.models, keep=plan.keep)
        first += raw.height


@dataclass
class Summary:
    """Counts per category per model."""

    models: tuple[Model, ...]
    rows: int = 0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, results: pl.DataFrame) -> None:
        self.rows += results.height
        for model in self.models:
            column = model.columns()[1]
            for category, n in results.get_column(column).value_counts().iter_rows():
                self.counts[(model.name, category)] += n

    def table(self) -> list[tuple[str, str, int]]:
        """(model, category, count) rows: the model's categories in their order, then the statuses."""
        rows = []
        for model in self.models:
            for category in (*model.categories, *STATUSES):
                n = self.counts.get((model.name, category), 0)
                if n or category in model.categories:
                    rows.append((model.name, category, n))
        return rows
