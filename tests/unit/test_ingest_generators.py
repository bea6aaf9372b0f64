"""The raw data generators: deterministic, sized by the scale, and referentially intact."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.ingest.generators import (
    CRM_TABLES,
    DEAL_CURRENCIES,
    DEAL_STAGES,
    FX_START_RATES,
    FX_TABLES,
    IngestScale,
    fx_window,
    generate_crm,
    generate_fx,
)

AS_OF = date(2024, 6, 30)
LOADED_AT = datetime(2024, 6, 30, 6, 0)
SCALE = IngestScale()


def _fx(scale: IngestScale = SCALE, **kwargs: object) -> list[tuple]:
    return generate_fx(scale, as_of=AS_OF, loaded_at=LOADED_AT, **kwargs)["exchange_rates"]


def _crm(scale: IngestScale = SCALE, **kwargs: object) -> dict[str, list[tuple]]:
    return generate_crm(scale, as_of=AS_OF, loaded_at=LOADED_AT, **kwargs)


def test_same_inputs_give_identical_rows() -> None:
    assert _fx() == _fx()
    assert _crm() == _crm()


def test_a_different_seed_gives_different_rows() -> None:
    assert _fx(seed=1) != _fx(seed=2)
    assert _crm(seed=1)["deals"] != _crm(seed=2)["deals"]


def test_generators_return_exactly_the_declared_tables() -> None:
    assert set(generate_fx(SCALE, as_of=AS_OF, loaded_at=LOADED_AT)) == {
        table.name for table in FX_TABLES
    }
    assert set(_crm()) == {table.name for table in CRM_TABLES}


def test_rows_have_one_value_per_declared_column() -> None:
    tables = {table.name: table for table in (*FX_TABLES, *CRM_TABLES)}
    data = {"exchange_rates": _fx(), **_crm()}
    for name, rows in data.items():
        assert {len(row) for row in rows} == {len(tables[name].columns)}, name


def test_crm_row_counts_follow_the_scale() -> None:
    scale = IngestScale(fx_days=30, companies=7, contacts_per_company=4, deals=55)
    crm = _crm(scale)
    assert len(crm["companies"]) == 7
    assert len(crm["contacts"]) == 7 * 4
    assert len(crm["deals"]) == 55


def test_fx_covers_the_window_with_some_days_missing() -> None:
    rows = _fx()
    first_day, last_day = fx_window(SCALE, AS_OF)
    assert first_day == AS_OF - timedelta(days=SCALE.fx_days - 1)
    days_with_rates = {row[0] for row in rows}
    all_days = {first_day + timedelta(days=n) for n in range(SCALE.fx_days)}
    assert days_with_rates <= all_days
    assert all_days - days_with_rates, "gap filling needs at least one missing day"
    assert len(rows) < SCALE.fx_days * len(FX_START_RATES)


def test_first_and_last_fx_days_are_complete_so_every_deal_converts() -> None:
    rows = _fx()
    first_day, last_day = fx_window(SCALE, AS_OF)
    for day in (first_day, last_day):
        assert {row[2] for row in rows if row[0] == day} == set(FX_START_RATES)


def test_fx_rows_are_eur_based_positive_and_unique_per_day_and_currency() -> None:
    rows = _fx()
    assert {row[1] for row in rows} == {"EUR"}
    assert all(row[3] > 0 for row in rows)
    keys = [(row[0], row[2]) for row in rows]
    assert len(keys) == len(set(keys))


def test_every_company_has_a_deal_owner() -> None:
    crm = _crm()
    owning_companies = {contact[1] for contact in crm["contacts"] if contact[5]}
    assert owning_companies == {company[0] for company in crm["companies"]}


def test_deals_reference_existing_companies_and_owners_of_the_same_company() -> None:
    crm = _crm()
    company_ids = {company[0] for company in crm["companies"]}
    contacts = {contact[0]: contact for contact in crm["contacts"]}
    for deal in crm["deals"]:
        assert deal[1] in company_ids
        owner = contacts[deal[2]]
        assert owner[1] == deal[1], "the owner works for the deal's company"
        assert owner[5], "the owner is flagged as a deal owner"


def test_contacts_reference_existing_companies_and_ids_are_unique() -> None:
    crm = _crm()
    company_ids = [company[0] for company in crm["companies"]]
    contact_ids = [contact[0] for contact in crm["contacts"]]
    deal_ids = [deal[0] for deal in crm["deals"]]
    for ids in (company_ids, contact_ids, deal_ids):
        assert len(ids) == len(set(ids))
    assert {contact[1] for contact in crm["contacts"]} <= set(company_ids)


def test_deal_values_match_the_accepted_values_of_the_dbt_tests() -> None:
    deals = _crm()["deals"]
    assert {deal[5] for deal in deals} <= set(DEAL_CURRENCIES)
    assert {deal[6] for deal in deals} <= set(DEAL_STAGES)
    assert all(deal[4] > 0 for deal in deals)


def test_deal_dates_fall_in_the_fx_window_and_only_closed_deals_have_a_close_date() -> None:
    first_day, last_day = fx_window(SCALE, AS_OF)
    for deal in _crm()["deals"]:
        created_date, close_date, stage = deal[7], deal[8], deal[6]
        assert first_day <= created_date <= last_day
        if stage in ("closed_won", "closed_lost"):
            assert close_date is not None
            assert created_date <= close_date <= last_day
        else:
            assert close_date is None


def test_every_row_carries_the_given_loaded_at() -> None:
    assert {row[-1] for row in _fx()} == {LOADED_AT}
    for rows in _crm().values():
        assert {row[-1] for row in rows} == {LOADED_AT}


@pytest.mark.parametrize(
    "kwargs",
    [{"fx_days": 0}, {"companies": 0}, {"contacts_per_company": 0}, {"deals": -1}],
)
def test_a_scale_that_would_produce_empty_tables_is_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="IngestScale"):
        IngestScale(**kwargs)


@settings(max_examples=40, deadline=None)
@given(
    fx_days=st.integers(min_value=1, max_value=60),
    companies=st.integers(min_value=1, max_value=8),
    contacts_per_company=st.integers(min_value=1, max_value=4),
    deals=st.integers(min_value=0, max_value=40),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_integrity_holds_for_any_scale_and_seed(
    fx_days: int, companies: int, contacts_per_company: int, deals: int, seed: int
) -> None:
    scale = IngestScale(fx_days, companies, contacts_per_company, deals)
    crm = _crm(scale, seed=seed)
    fx_days_present = {row[0] for row in _fx(scale, seed=seed)}
    first_day, last_day = fx_window(scale, AS_OF)
    assert {first_day, last_day} <= fx_days_present
    contacts = {contact[0]: contact for contact in crm["contacts"]}
    for deal in crm["deals"]:
        assert contacts[deal[2]][1] == deal[1]
        assert first_day <= deal[7] <= last_day
