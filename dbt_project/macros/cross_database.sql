{#
    Where DuckDB and PostgreSQL spell the same thing differently and dbt has no macro of its
    own for it. Each duckdb__ form is what the models wrote before they ran on both, so the
    DuckDB warehouse computes exactly what it always did; each postgres__ form is chosen to
    give the same values, which is why some look longer than they need to (see each one).
#}

{#- The text value of a top-level key of a JSON object (a JSON column, or JSON kept as text). -#}
{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text', 'data_spine')(column, key)) }}
{%- endmacro %}

{% macro default__json_text(column, key) -%}
    json_extract_string({{ column }}, '$."{{ key }}"')
{%- endmacro %}

{% macro postgres__json_text(column, key) -%}
    (cast({{ column }} as jsonb) ->> '{{ key }}')
{%- endmacro %}

{#- Set-returning: one row per element of a JSON array (kept as JSON), none for null. -#}
{% macro json_array_elements(column) -%}
    {{ return(adapter.dispatch('json_array_elements', 'data_spine')(column)) }}
{%- endmacro %}

{% macro default__json_array_elements(column) -%}
    unnest(json_extract({{ column }}, '$[*]'))
{%- endmacro %}

{% macro postgres__json_array_elements(column) -%}
    jsonb_array_elements(cast({{ column }} as jsonb))
{%- endmacro %}

{#- The sum of a whole-number key over the objects of a JSON array; null for none. -#}
{% macro json_array_sum(column, key) -%}
    {{ return(adapter.dispatch('json_array_sum', 'data_spine')(column, key)) }}
{%- endmacro %}

{% macro default__json_array_sum(column, key) -%}
    list_sum(cast(json_extract({{ column }}, '$[*].{{ key }}') as bigint[]))
{%- endmacro %}

{% macro postgres__json_array_sum(column, key) -%}
    (select sum(cast(entry ->> '{{ key }}' as bigint)) from jsonb_array_elements(cast({{ column }} as jsonb)) as entry)
{%- endmacro %}

{#-
    A JSON array of strings as a list of them (empty for null), and the set-returning unnest of
    such a list. PostgreSQL keeps it as JSONB: dbt's unit tests cannot declare a column of
    PostgreSQL's array types (information_schema calls them all ARRAY).
-#}
{% macro json_string_array(column) -%}
    {{ return(adapter.dispatch('json_string_array', 'data_spine')(column)) }}
{%- endmacro %}

{% macro default__json_string_array(column) -%}
    coalesce(from_json({{ column }}, '["VARCHAR"]'), [])
{%- endmacro %}

{% macro postgres__json_string_array(column) -%}
    coalesce(cast({{ column }} as jsonb), '[]'::jsonb)
{%- endmacro %}

{% macro unnest_string_array(column) -%}
    {{ return(adapter.dispatch('unnest_string_array', 'data_spine')(column)) }}
{%- endmacro %}

{% macro default__unnest_string_array(column) -%}
    unnest({{ column }})
{%- endmacro %}

{% macro postgres__unnest_string_array(column) -%}
    jsonb_array_elements_text({{ column }})
{%- endmacro %}

{#-
    A cast that reads a value it cannot convert as null. dbt.safe_cast is a plain cast on
    PostgreSQL, which fails the whole model on one stray value; a number is recognised by its
    shape there instead.
-#}
{% macro try_cast_number(expression, data_type) -%}
    {{ return(adapter.dispatch('try_cast_number', 'data_spine')(expression, data_type)) }}
{%- endmacro %}

{% macro default__try_cast_number(expression, data_type) -%}
    try_cast({{ expression }} as {{ data_type }})
{%- endmacro %}

{% macro postgres__try_cast_number(expression, data_type) -%}
    case
        when trim({{ expression }}) ~ '^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$'
            then cast(trim({{ expression }}) as {{ data_type }})
    end
{%- endmacro %}

{#- The double-precision float type (dbt.type_float() is DuckDB's 4-byte FLOAT). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'data_spine')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{#-
    An expression as it sorts byte by byte (DuckDB's order for text), whatever collation the
    PostgreSQL database was created with: for the tie-breaks on ids that pick one row.
-#}
{% macro byte_order(expression) -%}
    {{ return(adapter.dispatch('byte_order', 'data_spine')(expression)) }}
{%- endmacro %}

{% macro default__byte_order(expression) -%}
    {{ expression }}
{%- endmacro %}

{% macro postgres__byte_order(expression) -%}
    {{ expression }} collate "C"
{%- endmacro %}

{#- Aggregate: the greatest value in byte order, in the database's own collation again. -#}
{% macro byte_order_max(expression) -%}
    {{ return(adapter.dispatch('byte_order_max', 'data_spine')(expression)) }}
{%- endmacro %}

{% macro default__byte_order_max(expression) -%}
    max({{ expression }})
{%- endmacro %}

{% macro postgres__byte_order_max(expression) -%}
    max({{ expression }} collate "C") collate "default"
{%- endmacro %}

{#-
    Aggregates: the value of the row that sorts first (arg_min) or last (arg_max) by the
    expressions `order_by` lists, skipping rows whose value is null (as DuckDB's arg_min and
    arg_max do); `filter` restricts the rows further. DuckDB compares two or more order-by
    expressions as one tuple, in which a null sorts after every value, and PostgreSQL's
    defaults (nulls last ascending, first descending) put nulls in the same place; a single
    one it compares as it is, skipping rows where it is null.
-#}
{% macro arg_min(value, order_by, filter=none) -%}
    {{ return(adapter.dispatch('arg_min', 'data_spine')(value, order_by, filter)) }}
{%- endmacro %}

{% macro arg_max(value, order_by, filter=none) -%}
    {{ return(adapter.dispatch('arg_max', 'data_spine')(value, order_by, filter)) }}
{%- endmacro %}

{% macro default__arg_min(value, order_by, filter=none) -%}
    arg_min({{ value }}, ({{ order_by | join(', ') }})){% if filter %} filter (where {{ filter }}){% endif %}
{%- endmacro %}

{% macro default__arg_max(value, order_by, filter=none) -%}
    arg_max({{ value }}, ({{ order_by | join(', ') }})){% if filter %} filter (where {{ filter }}){% endif %}
{%- endmacro %}

{#- The rows arg_min and arg_max take on PostgreSQL. -#}
{% macro arg_rows(value, order_by, filter=none) -%}
    {%- set conditions = [value ~ ' is not null'] -%}
    {%- if order_by | length == 1 -%}{%- do conditions.append(order_by[0] ~ ' is not null') -%}{%- endif -%}
    {%- if filter -%}{%- do conditions.append('(' ~ filter ~ ')') -%}{%- endif -%}
    {{ conditions | join(' and ') }}
{%- endmacro %}

{% macro postgres__arg_min(value, order_by, filter=none) -%}
    (array_agg({{ value }} order by {{ order_by | join(', ') }}) filter (where {{ arg_rows(value, order_by, filter) }}))[1]
{%- endmacro %}

{% macro postgres__arg_max(value, order_by, filter=none) -%}
    (array_agg({{ value }} order by {{ order_by | join(' desc, ') }} desc) filter (where {{ arg_rows(value, order_by, filter) }}))[1]
{%- endmacro %}

{#- Aggregate: the median of the rows `filter` keeps (all when none), interpolated, as a double. -#}
{% macro median(expression, filter=none) -%}
    {{ return(adapter.dispatch('median', 'data_spine')(expression, filter)) }}
{%- endmacro %}

{% macro default__median(expression, filter=none) -%}
    median({{ expression }}){% if filter %} filter (where {{ filter }}){% endif %}
{%- endmacro %}

{% macro postgres__median(expression, filter=none) -%}
    percentile_cont(0.5) within group (order by {{ expression }}){% if filter %} filter (where {{ filter }}){% endif %}
{%- endmacro %}

{#-
    Aggregate: the distinct non-null values, sorted, as an array. Meant for short codes of
    ASCII lower-case letters (source systems), which every collation sorts alike.
-#}
{% macro sorted_distinct_array(expression) -%}
    {{ return(adapter.dispatch('sorted_distinct_array', 'data_spine')(expression)) }}
{%- endmacro %}

{% macro default__sorted_distinct_array(expression) -%}
    list_sort(list_distinct(list({{ expression }})))
{%- endmacro %}

{% macro postgres__sorted_distinct_array(expression) -%}
    array_agg(distinct {{ expression }} order by {{ expression }}) filter (where {{ expression }} is not null)
{%- endmacro %}

{#-
    Set-returning: every month (as a DATE) from `start_month` to `end_month`, both first days
    of a month. PostgreSQL would take dates for TIMESTAMPTZ and step in the session's time
    zone, so they go in as naive timestamps.
-#}
{% macro month_series(start_month, end_month) -%}
    {{ return(adapter.dispatch('month_series', 'data_spine')(start_month, end_month)) }}
{%- endmacro %}

{% macro default__month_series(start_month, end_month) -%}
    cast(unnest(generate_series({{ start_month }}, {{ end_month }}, interval 1 month)) as date)
{%- endmacro %}

{% macro postgres__month_series(start_month, end_month) -%}
    cast(generate_series(cast({{ start_month }} as timestamp), cast({{ end_month }} as timestamp), interval '1 month') as date)
{%- endmacro %}

{#- Set-returning: every day (as a DATE) from `start_date` to `end_date`. -#}
{% macro day_series(start_date, end_date) -%}
    {{ return(adapter.dispatch('day_series', 'data_spine')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__day_series(start_date, end_date) -%}
    cast(unnest(generate_series({{ start_date }}, {{ end_date }}, interval 1 day)) as date)
{%- endmacro %}

{% macro postgres__day_series(start_date, end_date) -%}
    cast(generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval '1 day') as date)
{%- endmacro %}

{#-
    A date or timestamp as text, `format` written with strftime's %Y %m %d %H %M %S (the
    only ones translated for PostgreSQL's to_char).
-#}
{% macro format_timestamp(expression, format) -%}
    {{ return(adapter.dispatch('format_timestamp', 'data_spine')(expression, format)) }}
{%- endmacro %}

{% macro default__format_timestamp(expression, format) -%}
    strftime({{ expression }}, '{{ format }}')
{%- endmacro %}

{% macro postgres__format_timestamp(expression, format) -%}
    {%- set pattern = format
        | replace('T', '"T"')
        | replace('%Y', 'YYYY') | replace('%m', 'MM') | replace('%d', 'DD')
        | replace('%H', 'HH24') | replace('%M', 'MI') | replace('%S', 'SS') -%}
    to_char(cast({{ expression }} as timestamp), '{{ pattern }}')
{%- endmacro %}

{#- The first match of a regular expression in a string, '' when none (DuckDB's regexp_extract). -#}
{% macro regexp_extract(expression, pattern) -%}
    {{ return(adapter.dispatch('regexp_extract', 'data_spine')(expression, pattern)) }}
{%- endmacro %}

{% macro default__regexp_extract(expression, pattern) -%}
    regexp_extract({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__regexp_extract(expression, pattern) -%}
    coalesce(substring({{ expression }} from '{{ pattern }}'), case when {{ expression }} is not null then '' end)
{%- endmacro %}

{#- Whether the whole string matches a regular expression. -#}
{% macro regexp_full_match(expression, pattern) -%}
    {{ return(adapter.dispatch('regexp_full_match', 'data_spine')(expression, pattern)) }}
{%- endmacro %}

{% macro default__regexp_full_match(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__regexp_full_match(expression, pattern) -%}
    ({{ expression }} ~ '^({{ pattern }})$')
{%- endmacro %}

{#-
    A double rounded half away from zero, as DuckDB's round does (PostgreSQL rounds a double
    half to even, and has no round(double, digits)); to `digits` decimals like DuckDB: scaled,
    rounded, scaled back, in double arithmetic.
-#}
{% macro round_double(expression, digits=0) -%}
    {{ return(adapter.dispatch('round_double', 'data_spine')(expression, digits)) }}
{%- endmacro %}

{% macro default__round_double(expression, digits=0) -%}
    round({{ expression }}{% if digits %}, {{ digits }}{% endif %})
{%- endmacro %}

{% macro postgres__round_double(expression, digits=0) -%}
    {%- set scaled = '(cast(' ~ expression ~ ' as double precision)' ~ (' * cast(1e' ~ digits ~ ' as double precision)' if digits else '') ~ ')' -%}
    {%- set rounded = '(trunc(' ~ scaled ~ ') + case when abs(' ~ scaled ~ ' - trunc(' ~ scaled ~ ')) >= 0.5 then sign(' ~ scaled ~ ') else 0 end)' -%}
    {%- if digits -%}
        ({{ rounded }} / cast(1e{{ digits }} as double precision))
    {%- else -%}
        {{ rounded }}
    {%- endif -%}
{%- endmacro %}

{#-
    A double cast to DECIMAL(precision, scale) as DuckDB does it: the double scaled, then
    rounded half away from zero. PostgreSQL first turns a double into a decimal of 15
    significant digits, which rounds 1.005 (just below it as a double) up instead of down.
-#}
{% macro double_to_decimal(expression, precision, scale) -%}
    {{ return(adapter.dispatch('double_to_decimal', 'data_spine')(expression, precision, scale)) }}
{%- endmacro %}

{% macro default__double_to_decimal(expression, precision, scale) -%}
    cast({{ expression }} as decimal({{ precision }}, {{ scale }}))
{%- endmacro %}

{% macro postgres__double_to_decimal(expression, precision, scale) -%}
    cast({{ round_double(expression, scale) }} as decimal({{ precision }}, {{ scale }}))
{%- endmacro %}

{#-
    Per-user-day features: an array of {feature, events} built by an aggregate (sorted by
    feature), its element fields, and the set-returning unnest of it. DuckDB keeps a list of
    structs; PostgreSQL a JSONB array of objects.
-#}
{% macro feature_list_agg(feature, events, filter) -%}
    {{ return(adapter.dispatch('feature_list_agg', 'data_spine')(feature, events, filter)) }}
{%- endmacro %}

{% macro default__feature_list_agg(feature, events, filter) -%}
    coalesce(list_sort(list({ 'feature': {{ feature }}, 'events': {{ events }} }) filter (where {{ filter }})), [])
{%- endmacro %}

{% macro postgres__feature_list_agg(feature, events, filter) -%}
    coalesce(
        jsonb_agg(jsonb_build_object('feature', {{ feature }}, 'events', {{ events }}) order by {{ byte_order(feature) }}) filter (where {{ filter }}),
        '[]'::jsonb
    )
{%- endmacro %}

{% macro unnest_features(column) -%}
    {{ return(adapter.dispatch('unnest_features', 'data_spine')(column)) }}
{%- endmacro %}

{% macro default__unnest_features(column) -%}
    unnest({{ column }})
{%- endmacro %}

{% macro postgres__unnest_features(column) -%}
    jsonb_array_elements({{ column }})
{%- endmacro %}

{% macro feature_field(element, field) -%}
    {{ return(adapter.dispatch('feature_field', 'data_spine')(element, field)) }}
{%- endmacro %}

{% macro default__feature_field(element, field) -%}
    {{ element }}.{{ field }}
{%- endmacro %}

{% macro postgres__feature_field(element, field) -%}
    {%- if field == 'events' -%}
        cast({{ element }} ->> 'events' as bigint)
    {%- else -%}
        ({{ element }} ->> '{{ field }}')
    {%- endif -%}
{%- endmacro %}

{#-
    Aggregate: which keys a group holds, as one BIGINT that changes when any key comes or
    goes (the xor of a 60-bit slice of each key's md5), the same number on either warehouse.
-#}
{% macro set_digest(expression) -%}
    {{ return(adapter.dispatch('set_digest', 'data_spine')(expression)) }}
{%- endmacro %}

{% macro default__set_digest(expression) -%}
    bit_xor(cast('0x' || substr({{ dbt.hash(expression) }}, 1, 15) as bigint))
{%- endmacro %}

{% macro postgres__set_digest(expression) -%}
    bit_xor(cast(cast('x' || substr({{ dbt.hash(expression) }}, 1, 15) as bit(60)) as bigint))
{%- endmacro %}
