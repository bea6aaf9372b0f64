"""``orchestration.dbt.argv``: dbt command lines and selectors.yml, written out by hand."""

from __future__ import annotations

import json

import pytest

from orchestration.dbt.argv import (
    SELECTOR_NAME,
    Selection,
    build_args,
    complement_selectors_yaml,
    node_selector_value,
    selectors_yaml,
    uses_selector_file,
)

MANIFEST = {
    "nodes": {
        "model.shop.orders": {"name": "orders", "fqn": ["shop", "marts", "orders"]},
        # Two models named "customers" in different folders: only the fqn tells them apart.
        "model.shop.customers": {"name": "customers", "fqn": ["shop", "marts", "customers"]},
        "model.shop.stg_customers": {
            "name": "customers",
            "fqn": ["shop", "staging", "crm", "customers"],
        },
        "seed.shop.countries": {"name": "countries", "fqn": ["shop", "countries"]},
    },
    "sources": {
        "source.shop.crm.accounts": {
            "source_name": "crm",
            "name": "accounts",
            "fqn": ["shop", "staging", "crm", "crm", "accounts"],
        }
    },
}

ORDERS = "model.shop.orders"
CUSTOMERS = "model.shop.customers"


# ---------------------------------------------------------------- node_selector_value


@pytest.mark.parametrize(
    ("unique_id", "expected"),
    [
        ("model.shop.orders", "fqn:shop.marts.orders"),
        ("model.shop.stg_customers", "fqn:shop.staging.crm.customers"),
        ("seed.shop.countries", "fqn:shop.countries"),
        ("source.shop.crm.accounts", "source:crm.accounts"),
        ("exposure.shop.weekly_dashboard", "exposure:weekly_dashboard"),
        ("saved_query.shop.revenue_by_month", "saved_query:revenue_by_month"),
    ],
)
def test_each_node_kind_gets_the_selector_that_picks_exactly_it(
    unique_id: str, expected: str
) -> None:
    assert node_selector_value(unique_id, MANIFEST) == expected


def test_an_unknown_node_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="model.shop.gone"):
        node_selector_value("model.shop.gone", MANIFEST)
    with pytest.raises(KeyError):
        node_selector_value("source.shop.crm.gone", MANIFEST)


def test_a_manifest_without_sources_still_resolves_models() -> None:
    assert node_selector_value(ORDERS, {"nodes": MANIFEST["nodes"]}) == "fqn:shop.marts.orders"


# ---------------------------------------------------------------- uses_selector_file


def test_the_selector_file_is_used_only_above_the_threshold() -> None:
    two = Selection((ORDERS, CUSTOMERS))
    assert uses_selector_file(two, 2) is False
    assert uses_selector_file(two, 1) is True
    assert uses_selector_file(Selection(()), 0) is False
    assert uses_selector_file(Selection.everything(), 0) is False


def test_selection_flags() -> None:
    assert Selection.everything().is_everything is True
    assert Selection.everything().is_empty is False
    assert Selection(()).is_empty is True
    assert Selection(()).is_everything is False
    assert Selection((ORDERS,)).is_empty is False


# ---------------------------------------------------------------- selectors_yaml


def test_selectors_yaml_is_one_union_selector() -> None:
    text = selectors_yaml(["fqn:shop.marts.orders", "source:crm.accounts"])
    assert json.loads(text) == {
        "selectors": [
            {
                "name": "orchestration_selection",
                "definition": {"union": ["fqn:shop.marts.orders", "source:crm.accounts"]},
            }
        ]
    }


def test_an_indirect_selection_mode_goes_on_every_criterion() -> None:
    text = selectors_yaml(["fqn:shop.marts.orders", "source:crm.accounts"], "cautious")
    assert json.loads(text) == {
        "selectors": [
            {
                "name": "orchestration_selection",
                "definition": {
                    "union": [
                        {
                            "method": "fqn",
                            "value": "shop.marts.orders",
                            "indirect_selection": "cautious",
                        },
                        {
                            "method": "source",
                            "value": "crm.accounts",
                            "indirect_selection": "cautious",
                        },
                    ]
                },
            }
        ]
    }


def test_selectors_yaml_is_valid_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    parsed = yaml.safe_load(selectors_yaml(["fqn:shop.marts.orders"], "empty"))
    assert parsed["selectors"][0]["definition"]["union"] == [
        {"method": "fqn", "value": "shop.marts.orders", "indirect_selection": "empty"}
    ]


# ---------------------------------------------------------------- build_args


def test_the_whole_project_has_no_selection_flag() -> None:
    args = build_args("build", selection=Selection.everything(), manifest=MANIFEST, threshold=10)
    assert args == ["build"]


def test_a_small_selection_goes_on_the_command_line_sorted() -> None:
    args = build_args(
        "build",
        selection=Selection((ORDERS, "source.shop.crm.accounts", CUSTOMERS)),
        manifest=MANIFEST,
        threshold=3,
    )
    assert args == [
        "build",
        "--select",
        "fqn:shop.marts.customers",
        "fqn:shop.marts.orders",
        "source:crm.accounts",
    ]


def test_a_complement_is_everything_minus_its_nodes_with_cautious_tests() -> None:
    # Cautious, so a test over an excluded node and a kept one stays selected.
    args = build_args(
        "build",
        selection=Selection((ORDERS,), complement=(CUSTOMERS,)),
        manifest=MANIFEST,
        threshold=3,
        indirect_selection="cautious",
    )
    assert args == [
        "build",
        "--select",
        "fqn:*",
        "--exclude",
        "fqn:shop.marts.customers",
        "--indirect-selection",
        "cautious",
    ]


def test_a_large_complement_goes_into_the_selector_file() -> None:
    selection = Selection((ORDERS,), complement=(CUSTOMERS, "source.shop.crm.accounts"))
    assert uses_selector_file(selection, 1) is True
    assert uses_selector_file(selection, 2) is False
    assert build_args("build", selection=selection, manifest=MANIFEST, threshold=1) == [
        "build",
        "--selector",
        "orchestration_selection",
    ]
    text = complement_selectors_yaml(["fqn:shop.marts.customers", "source:crm.accounts"])
    assert json.loads(text)["selectors"][0]["definition"] == {
        "union": [
            {"method": "fqn", "value": "*"},
            {
                "exclude": [
                    {
                        "method": "fqn",
                        "value": "shop.marts.customers",
                        "indirect_selection": "cautious",
                    },
                    {
                        "method": "source",
                        "value": "crm.accounts",
                        "indirect_selection": "cautious",
                    },
                ]
            },
        ]
    }


SEEDED = {
    "nodes": MANIFEST["nodes"]
    | {"seed.shop.currencies": {"name": "currencies", "fqn": ["shop", "lookups", "currencies"]}},
    "sources": MANIFEST["sources"],
}
SEEDS = ("seed.shop.countries", "seed.shop.currencies")


def test_every_node_of_a_type_is_one_resource_type_criterion() -> None:
    # dbt scans the whole project once per criterion: 200 seeds as 200 fqn values cost 3 s.
    args = build_args("build", selection=Selection((*SEEDS, ORDERS)), manifest=SEEDED, threshold=10)
    assert args == ["build", "--select", "fqn:shop.marts.orders", "resource_type:seed"]
    everything_but_seeds = Selection((ORDERS,), complement=SEEDS)
    assert build_args("build", selection=everything_but_seeds, manifest=SEEDED, threshold=10) == [
        "build",
        "--select",
        "fqn:*",
        "--exclude",
        "resource_type:seed",
        "--indirect-selection",
        "cautious",
    ]


def test_some_nodes_of_a_type_stay_one_criterion_each() -> None:
    args = build_args(
        "build", selection=Selection((SEEDS[0], ORDERS)), manifest=SEEDED, threshold=10
    )
    assert args == ["build", "--select", "fqn:shop.countries", "fqn:shop.marts.orders"]
    # The only node of its type is not worth a type criterion: it reads as the node itself.
    only_seed = build_args(
        "build", selection=Selection((SEEDS[0],)), manifest=MANIFEST, threshold=10
    )
    assert only_seed == ["build", "--select", "fqn:shop.countries"]


def test_a_large_selection_names_the_selector_and_drops_indirect_selection() -> None:
    # dbt ignores --indirect-selection with --selector; selectors_yaml carries it instead.
    args = build_args(
        "build",
        selection=Selection((ORDERS, CUSTOMERS)),
        manifest=MANIFEST,
        threshold=1,
        indirect_selection="cautious",
    )
    assert args == ["build", "--selector", "orchestration_selection"]
    assert SELECTOR_NAME == "orchestration_selection"


def test_every_option_in_order() -> None:
    args = build_args(
        "run",
        selection=Selection((ORDERS,)),
        manifest=MANIFEST,
        threshold=5,
        full_refresh=True,
        fail_fast=True,
        dbt_vars={"b": 2, "a": {"x": "y"}},
        target="prod",
        indirect_selection="empty",
        extra=["--no-partial-parse"],
    )
    assert args == [
        "run",
        "--select",
        "fqn:shop.marts.orders",
        "--indirect-selection",
        "empty",
        "--full-refresh",
        "--fail-fast",
        "--vars",
        '{"a": {"x": "y"}, "b": 2}',
        "--target",
        "prod",
        "--no-partial-parse",
    ]


def test_empty_vars_and_no_target_add_nothing() -> None:
    args = build_args(
        "test", selection=Selection.everything(), manifest=MANIFEST, threshold=0, dbt_vars={}
    )
    assert args == ["test"]


def test_full_refresh_and_fail_fast_are_independent() -> None:
    everything = Selection.everything()
    only_refresh = build_args(
        "build", selection=everything, manifest=MANIFEST, threshold=0, full_refresh=True
    )
    only_fail_fast = build_args(
        "build", selection=everything, manifest=MANIFEST, threshold=0, fail_fast=True
    )
    assert only_refresh == ["build", "--full-refresh"]
    assert only_fail_fast == ["build", "--fail-fast"]
