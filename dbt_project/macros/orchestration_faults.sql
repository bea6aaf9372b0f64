{#-
  Fault injection for the orchestration's failure drills, driven only by --vars so that
  no file changes between a failing run and its retry.

  var('orchestration_model_faults', {})  {model name or unique_id: message}
      The model's pre-hook raises a genuine database error carrying the message, so
      dbt reports the model as `error` (not a compile error) and skips its downstream.
  var('orchestration_test_faults', {})   {model name or unique_id: message}
      Every error-severity generic data test attached to that model fails (status
      `fail`), by overriding dbt's test SQL wrapper below.
  var('orchestration_batch_faults', {})  {model name or unique_id: {YYYY-MM-DD: message}}
      Only the microbatches of that day fail, with a genuine database error: a microbatch
      model ends its select with `{{ orchestration_batch_fault_guard() }}` (dbt runs a
      model's pre-hook for its first batch only, so a hook cannot fail one batch).
  With neither var set, both render exactly what dbt would render without them.
-#}

{% macro orchestration_fault_message(faults, node_name, node_unique_id) -%}
  {#- The message configured for a node, or none. Keys may be names or unique_ids. -#}
  {%- if faults is mapping -%}
    {%- if node_unique_id in faults -%}
      {{- return(faults[node_unique_id] | string) -}}
    {%- elif node_name in faults -%}
      {{- return(faults[node_name] | string) -}}
    {%- endif -%}
  {%- endif -%}
  {{- return(none) -}}
{%- endmacro %}


{% macro orchestration_fault_hex(message) -%}
  {#- The message as UTF-8 hex: only [0-9a-f] ever reaches the SQL text, so no quote, dollar
      tag, comment or line break in a message can end a literal and become SQL. -#}
  {{- return((message | string).encode('utf-8').hex()) -}}
{%- endmacro %}


{% macro orchestration_fault_hook() -%}
  {#- Project-wide model pre-hook: empty unless the model is named in the var. -#}
  {%- set message = orchestration_fault_message(
      var('orchestration_model_faults', {}), model.name, model.unique_id) -%}
  {%- if message is not none -%}
    {{ adapter.dispatch('orchestration_raise_error')(message) }}
  {%- endif -%}
{%- endmacro %}


{% macro orchestration_batch_fault_guard() -%}
  {#- Inside a microbatch model's SQL: a `where` that raises a database error for a faulted
      batch, nothing otherwise. `model.batch` is dbt's BatchContext (dbt >= 1.9), set only
      while a batch is compiled; its `id` is the batch start without dashes (20260915, or
      20260915T13 for hourly batches), so a day's fault matches every batch of that day. -#}
  {%- set faults = var('orchestration_batch_faults', {}) -%}
  {%- set batch = model.get('batch') if model is mapping else model.batch -%}
  {%- if faults and batch -%}
    {%- set by_day = faults.get(model.unique_id) or faults.get(model.name) or {} -%}
    {%- for day, message in by_day.items() -%}
      {%- if (batch.get('id') if batch is mapping else batch.id).startswith(day | replace('-', '')) %}
where {{ adapter.dispatch('orchestration_fault_predicate')(message) }}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro %}


{% macro default__orchestration_fault_predicate(message) -%}
  {{ exceptions.raise_compiler_error(
      "orchestration_batch_faults is not supported on adapter " ~ target.type
      ~ "; add a " ~ target.type ~ "__orchestration_fault_predicate macro") }}
{%- endmacro %}


{% macro duckdb__orchestration_fault_predicate(message) -%}
  error(decode(unhex('{{ orchestration_fault_hex(message) }}'))) is null
{%- endmacro %}


{% macro postgres__orchestration_fault_predicate(message) -%}
  {#- PostgreSQL has no error(): a failed cast of the message is a genuine database error
      that carries it (`invalid input syntax for type integer: "<message>"`). -#}
  cast(convert_from(decode('{{ orchestration_fault_hex(message) }}', 'hex'), 'UTF8') as integer) is not null
{%- endmacro %}


{% macro default__orchestration_raise_error(message) -%}
  {{ exceptions.raise_compiler_error(
      "orchestration_model_faults is not supported on adapter " ~ target.type
      ~ "; add a " ~ target.type ~ "__orchestration_raise_error macro") }}
{%- endmacro %}


{% macro duckdb__orchestration_raise_error(message) -%}
  select error(decode(unhex('{{ orchestration_fault_hex(message) }}')))
{%- endmacro %}


{% macro postgres__orchestration_raise_error(message) -%}
  {#- `using message` avoids RAISE's % placeholders; the message arrives hex-encoded, so the
      body of the dollar-quoted block cannot hold its closing tag. -#}
  do $orchestration_fault$ begin raise exception using message = convert_from(decode('{{ orchestration_fault_hex(message) }}', 'hex'), 'UTF8'); end $orchestration_fault$
{%- endmacro %}


{% macro default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) -%}
  {#-
    Root-project override of dbt's test wrapper (adapter.dispatch('get_test_sql', 'dbt')
    searches the root project first). `model` is the test node being executed.
  -#}
  {%- set attached = model.get('attached_node') if model is mapping else model.attached_node -%}
  {%- set severity = (model.config.severity or 'error') | string | upper -%}
  {%- set message = none -%}
  {%- if attached and model.test_metadata and severity == 'ERROR' -%}
    {%- set attached_name = attached.split('.')[2] if attached.count('.') >= 2 else attached -%}
    {%- set message = orchestration_fault_message(
        var('orchestration_test_faults', {}), attached_name, attached) -%}
  {%- endif -%}
  {%- if message is none -%}
    {{ dbt.default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) }}
  {%- else -%}
    {{ log("orchestration_test_faults: forcing " ~ model.name ~ " to fail: " ~ message, info=true) }}
    -- orchestration_test_faults: forced failure, message (UTF-8 hex) {{ orchestration_fault_hex(message) }}
    select
      failures + 1 as failures,
      true as should_warn,
      true as should_error
    from (
      select coalesce(failures, 0) as failures
      from (
        {{ dbt.default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) }}
      ) dbt_internal_test_result
    ) orchestration_faulted_test
  {%- endif -%}
{%- endmacro %}


{#- Adapter-specific names win over default__ in dispatch; defining them here keeps the
    override in force even if an adapter release ships its own get_test_sql. -#}
{% macro duckdb__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) -%}
  {{ default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) }}
{%- endmacro %}


{% macro postgres__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) -%}
  {{ default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) }}
{%- endmacro %}
