{#
    Stripe sends instants as unix seconds; marts hold naive TIMESTAMPs meaning UTC.
#}
{% macro unix_to_timestamp(column) -%}
    (to_timestamp({{ column }}) at time zone 'UTC')
{%- endmacro %}

{#
    dlt loads ISO strings as TIMESTAMPTZ; converting explicitly at UTC keeps the result
    independent of the session's TimeZone setting.
#}
{% macro to_utc_timestamp(column) -%}
    ({{ column }} at time zone 'UTC')
{%- endmacro %}

{#
    Stripe amounts are integers in the currency's smallest unit. Most currencies have two
    decimals, but Stripe's zero-decimal currencies (yen, won, ...) are already whole units,
    and dividing those by 100 would understate revenue a hundredfold.
#}
{% macro stripe_zero_decimal_currencies() -%}
    ('bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf')
{%- endmacro %}

{% macro stripe_amount(amount_column, currency_column) -%}
    {#- Multiplying by a decimal literal stays in exact decimal arithmetic; dividing would go through DOUBLE. -#}
    cast(
        case
            when lower({{ currency_column }}) in {{ stripe_zero_decimal_currencies() }}
                then cast({{ amount_column }} as decimal(18, 0))
            else cast({{ amount_column }} as decimal(18, 0)) * 0.01
        end
        as decimal(18, 2)
    )
{%- endmacro %}

{#
    HubSpot returns every property as a string, empty when unset. A stray non-numeric value
    reads as null rather than failing the whole model; the staging tests flag it instead.
#}
{% macro hubspot_number(column) -%}
    {{ try_cast_number("nullif(trim(" ~ column ~ "), '')", 'decimal(18, 2)') }}
{%- endmacro %}

{% macro clean_string(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}

{% macro clean_enum(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{#
    Normalises a recurring amount to one month: a yearly price counts 1/12 per month, a
    quarterly one (month × 3) 1/3, a weekly one 52/12. Kept at 6 decimals so that rounding
    to cents happens once, on the reported totals.
#}
{% macro monthly_amount(amount, interval, interval_count) -%}
    {{ return(adapter.dispatch('monthly_amount', 'data_spine')(amount, interval, interval_count)) }}
{%- endmacro %}

{#- DuckDB divides in DOUBLE here (12.0 / 52 is a DOUBLE), then rounds to the decimal. -#}
{% macro default__monthly_amount(amount, interval, interval_count) -%}
    cast(
        ({{ amount }})
        / (
            case {{ interval }}
                when 'month' then 1.0
                when 'year' then 12.0
                when 'week' then 12.0 / 52
                when 'day' then 12.0 / 365
            end
            * coalesce({{ interval_count }}, 1)
        )
        as decimal(18, 6)
    )
{%- endmacro %}

{#- The same DOUBLE arithmetic and rounding on PostgreSQL, where the literals would be exact NUMERIC. -#}
{% macro postgres__monthly_amount(amount, interval, interval_count) -%}
    {{ double_to_decimal(
        'cast((' ~ amount ~ ') as double precision)'
        ~ ' / (case ' ~ interval
        ~ " when 'month' then cast(1 as double precision)"
        ~ " when 'year' then cast(12 as double precision)"
        ~ " when 'week' then cast(12 as double precision) / 52"
        ~ " when 'day' then cast(12 as double precision) / 365"
        ~ ' end * coalesce(' ~ interval_count ~ ', 1))',
        18, 6
    ) }}
{%- endmacro %}

{#
    Money in USD at the planning rate of its currency (the exchange_rates seed: rates kept
    constant on purpose, so that MRR moves with the business, not with currency swings).
    join_usd_rate joins the rate of each row's currency; a left join, so that a currency
    without a rate keeps its rows and leaves their USD amounts null, which the tests catch,
    rather than dropping the revenue. to_usd converts an amount of such a row. `rates` names
    the joined seed, should a query need two.
#}
{% macro join_usd_rate(currency_column, rates='exchange_rates') -%}
    left join {{ ref('exchange_rates') }} as {{ rates }}
        on {{ currency_column }} = {{ rates }}.currency
{%- endmacro %}

{% macro to_usd(amount, rates='exchange_rates') -%}
    ({{ amount }}) * {{ rates }}.rate_to_usd
{%- endmacro %}
