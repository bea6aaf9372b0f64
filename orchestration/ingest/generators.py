"""Deterministic raw data for the `fx` and `crm` dbt sources.

The project has no network at run time, so ingestion cannot call an FX API or a CRM.
Instead these pure functions stand in for those systems: the same scale, dates and seed
always give the same rows, which lets tests assert exact counts and lets a retried
ingestion step write exactly what the failed attempt would have written.

The data is shaped so that every error-severity dbt test passes (referential integrity,
accepted values, one deal owner per company) while still exercising the interesting
paths of the models: a few FX days are missing so that gap filling and `rpt_fx_coverage`
have something to report.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

FX_BASE_CURRENCY = "EUR"
# Rough EUR-based mid rates the random walk starts from; realistic magnitudes keep the
# converted amounts plausible (JPY in the hundreds, SEK around eleven).
FX_START_RATES: dict[str, float] = {
    "USD": 1.09,
    "GBP": 0.86,
    "CHF": 0.95,
    "JPY": 160.0,
    "SEK": 11.3,
}
DEAL_CURRENCIES: tuple[str, ...] = (FX_BASE_CURRENCY, *FX_START_RATES)
DEAL_STAGES: tuple[str, ...] = (
    "prospecting",
    "qualified",
    "proposal",
    "negotiation",
    "closed_won",
    "closed_lost",
)
CLOSED_STAGES: frozenset[str] = frozenset({"closed_won", "closed_lost"})
# Share of FX days dropped for every currency, and of single currency/day rows dropped.
FX_MISSING_DAY_SHARE = 0.05
FX_MISSING_ROW_SHARE = 0.02
COMPANY_HISTORY_DAYS = 730

_COUNTRIES = ("DE", "FR", "GB", "CH", "SE", "US", "JP", "NL", "ES", "IT")
_INDUSTRIES = ("software", "manufacturing", "retail", "finance", "healthcare", "logistics")
_NAME_PARTS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay")
_NAME_SUFFIXES = ("GmbH", "Ltd", "AG", "AB", "Inc", "SA", "BV", "KK")
_FIRST_NAMES = ("Ada", "Alan", "Grace", "Linus", "Marie", "Niels", "Rosa", "Tim", "Yuki", "Zoe")
_LAST_NAMES = ("Lovelace", "Turing", "Hopper", "Curie", "Bohr", "Parks", "Berners", "Tanaka")
_ROLES = ("account executive", "sales manager", "cfo", "buyer", "engineer", "ceo")
_DEAL_KINDS = ("renewal", "expansion", "new business", "pilot", "upsell")


@dataclass(frozen=True)
class IngestScale:
    """How much raw data to generate; the defaults build in seconds on a laptop."""

    fx_days: int = 120
    companies: int = 40
    contacts_per_company: int = 3
    deals: int = 400

    def __post_init__(self) -> None:
        # Fail here rather than as an empty table that makes every dbt test vacuous.
        for name in ("fx_days", "companies", "contacts_per_company"):
            if getattr(self, name) < 1:
                raise ValueError(f"IngestScale.{name} must be at least 1; pass a positive count")
        if self.deals < 0:
            raise ValueError("IngestScale.deals must not be negative; pass 0 or more")


@dataclass(frozen=True)
class RawTable:
    """A raw table as both the loader and the dbt sources see it."""

    source: str  # dbt source name: "fx" | "crm"
    name: str  # table name in the source: "exchange_rates", "companies", ...
    schema: str  # physical schema: "raw_fx" | "raw_crm"
    columns: tuple[tuple[str, str], ...]  # (column name, portable SQL type) in row order

    @property
    def qualified_name(self) -> str:
        """`schema.name`, as used in logs and SQL."""
        return f"{self.schema}.{self.name}"


EXCHANGE_RATES = RawTable(
    source="fx",
    name="exchange_rates",
    schema="raw_fx",
    columns=(
        ("rate_date", "date"),
        ("base_currency", "varchar"),
        ("quote_currency", "varchar"),
        ("rate", "double precision"),
        ("loaded_at", "timestamp"),
    ),
)
COMPANIES = RawTable(
    source="crm",
    name="companies",
    schema="raw_crm",
    columns=(
        ("company_id", "integer"),
        ("company_name", "varchar"),
        ("country", "varchar"),
        ("industry", "varchar"),
        ("created_at", "timestamp"),
        ("loaded_at", "timestamp"),
    ),
)
CONTACTS = RawTable(
    source="crm",
    name="contacts",
    schema="raw_crm",
    columns=(
        ("contact_id", "integer"),
        ("company_id", "integer"),
        ("full_name", "varchar"),
        ("email", "varchar"),
        ("role", "varchar"),
        ("is_deal_owner", "boolean"),
        ("loaded_at", "timestamp"),
    ),
)
DEALS = RawTable(
    source="crm",
    name="deals",
    schema="raw_crm",
    columns=(
        ("deal_id", "integer"),
        ("company_id", "integer"),
        ("owner_contact_id", "integer"),
        ("deal_name", "varchar"),
        ("amount", "double precision"),
        ("currency", "varchar"),
        ("stage", "varchar"),
        ("created_date", "date"),
        ("close_date", "date"),
        ("loaded_at", "timestamp"),
    ),
)

FX_TABLES: tuple[RawTable, ...] = (EXCHANGE_RATES,)
CRM_TABLES: tuple[RawTable, ...] = (COMPANIES, CONTACTS, DEALS)


def fx_window(scale: IngestScale, as_of: date) -> tuple[date, date]:
    """First and last day covered by FX rates; deals are kept inside it so all convert."""
    return as_of - timedelta(days=scale.fx_days - 1), as_of


def generate_fx(
    scale: IngestScale, *, as_of: date, loaded_at: datetime, seed: int = 7
) -> dict[str, list[tuple]]:
    """Daily EUR-based rates for `fx_days` days ending at `as_of`, with deliberate gaps.

    The first and last day are always complete: the models carry rates forward, so a
    gap on the first day would leave deals unconvertible, and a complete last day keeps
    the calendar's end equal to `as_of`.
    """
    rng = random.Random(seed)
    first_day, _ = fx_window(scale, as_of)
    days = [first_day + timedelta(days=offset) for offset in range(scale.fx_days)]
    inner_days = days[1:-1]
    missing_days = {day for day in inner_days if rng.random() < FX_MISSING_DAY_SHARE}
    if inner_days and not missing_days:
        # Guarantee at least one gap so the coverage report is never trivially complete.
        missing_days.add(inner_days[rng.randrange(len(inner_days))])

    inner_day_set = set(inner_days)
    rates = dict(FX_START_RATES)
    rows: list[tuple] = []
    for day in days:
        for currency in FX_START_RATES:
            # The walk advances on missing days too, so a gap really hides a movement.
            rates[currency] *= 1 + rng.gauss(0, 0.004)
            row_dropped = rng.random() < FX_MISSING_ROW_SHARE
            if day in missing_days or (day in inner_day_set and row_dropped):
                continue
            rows.append((day, FX_BASE_CURRENCY, currency, round(rates[currency], 6), loaded_at))
    return {EXCHANGE_RATES.name: rows}


def generate_crm(
    scale: IngestScale, *, as_of: date, loaded_at: datetime, seed: int = 11
) -> dict[str, list[tuple]]:
    """Companies, their contacts and deals, referentially intact.

    The first contact of each company is a deal owner, so every deal can name an owner
    from its own company; deal dates stay within the FX window so every amount converts.
    One generator draws all three tables in order, so the same seed gives the same data.
    """
    rng = random.Random(seed)
    first_day, last_day = fx_window(scale, as_of)
    companies = _companies(rng, scale, first_day, loaded_at)
    contacts, owners_by_company = _contacts(rng, scale, loaded_at)
    deals = _deals(rng, scale, first_day, last_day, owners_by_company, loaded_at)
    return {COMPANIES.name: companies, CONTACTS.name: contacts, DEALS.name: deals}


def _companies(
    rng: random.Random, scale: IngestScale, first_day: date, loaded_at: datetime
) -> list[tuple]:
    companies: list[tuple] = []
    for company_id in range(1, scale.companies + 1):
        name = f"{rng.choice(_NAME_PARTS)} {rng.choice(_NAME_SUFFIXES)} {company_id}"
        created_at = datetime.combine(
            first_day - timedelta(days=rng.randint(1, COMPANY_HISTORY_DAYS)),
            datetime.min.time(),
        ) + timedelta(seconds=rng.randint(0, 86_399))
        country, industry = rng.choice(_COUNTRIES), rng.choice(_INDUSTRIES)
        companies.append((company_id, name, country, industry, created_at, loaded_at))
    return companies


def _contacts(
    rng: random.Random, scale: IngestScale, loaded_at: datetime
) -> tuple[list[tuple], dict[int, list[int]]]:
    """Contacts, and the deal owners among them per company."""
    contacts: list[tuple] = []
    owners_by_company: dict[int, list[int]] = {}
    contact_id = 0
    for company_id in range(1, scale.companies + 1):
        for position in range(scale.contacts_per_company):
            contact_id += 1
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            is_owner = position == 0 or rng.random() < 0.3
            if is_owner:
                owners_by_company.setdefault(company_id, []).append(contact_id)
            email = f"{first}.{last}.{contact_id}@company{company_id}.example".lower()
            role = "account executive" if position == 0 else rng.choice(_ROLES)
            contacts.append(
                (contact_id, company_id, f"{first} {last}", email, role, is_owner, loaded_at)
            )
    return contacts, owners_by_company


def _deals(
    rng: random.Random,
    scale: IngestScale,
    first_day: date,
    last_day: date,
    owners_by_company: dict[int, list[int]],
    loaded_at: datetime,
) -> list[tuple]:
    window_days = (last_day - first_day).days
    deals: list[tuple] = []
    for deal_id in range(1, scale.deals + 1):
        company_id = rng.randint(1, scale.companies)
        currency = rng.choice(DEAL_CURRENCIES)
        amount_eur = rng.uniform(1_000, 250_000)
        amount = round(amount_eur * FX_START_RATES.get(currency, 1.0), 2)
        stage = rng.choice(DEAL_STAGES)
        created_date = first_day + timedelta(days=rng.randint(0, window_days))
        close_date = None
        if stage in CLOSED_STAGES:
            close_date = created_date + timedelta(
                days=rng.randint(0, (last_day - created_date).days)
            )
        owner = rng.choice(owners_by_company[company_id])
        name = f"{rng.choice(_DEAL_KINDS)} #{deal_id}"
        deals.append(
            (
                deal_id,
                company_id,
                owner,
                name,
                amount,
                currency,
                stage,
                created_date,
                close_date,
                loaded_at,
            )
        )
    return deals
