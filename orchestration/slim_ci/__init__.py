"""Slim CI: build only what a change touches, against the stored production state.

``slim_ci`` runs ``dbt build --select state:modified+ --defer --state <production manifest>``
into a CI target, so changed models and their downstream are built in a ``ci`` schema and read
their unchanged parents from production. Its assets live in their own key space (``ci/…``,
group ``slim_ci``): a CI build can never count as a production asset being rebuilt, for the
recovery planner, the retry sensor or the UI (``orchestration.slim_ci.translator``).
"""
