-- Each product feature's use each day, with the customers who used it: what
-- feature_adoption_daily counts paying customers from, a row per day and feature instead of
-- a row per user-day.
--
-- Incremental by what changed: a run recomputes, whole, the days of the user-days and usage
-- events written since its last run (new and late calls, calls placed in another account or
-- customer, days the as-of instant has passed). Other days keep their rows. Whether a
-- customer paid is left to feature_adoption_daily: billing changes touch past months every
-- day, usage rarely does.
-- depends_on: {{ ref('usage_events') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='activity_date',
        on_schema_change='append_new_columns',
        post_hook="delete from {{ this }} where activity_date >= {{ as_of_date() }}",
    )
}}
{% set incremental = is_incremental_with(['refreshed_at']) %}

with crosswalk as (
    {{ customer_crosswalk('product', 'workspace_id') }}
),

{% if incremental %}
    last_run as (
        select max(refreshed_at) as refreshed_at from {{ this }}
    ),

    recompute as (
        select activity_date from {{ ref('int_usage_user_days') }}
        where refreshed_at > (select refreshed_at from last_run)
        union
        select cast(occurred_at as date) from {{ ref('usage_events') }}
        where refreshed_at > (select refreshed_at from last_run)
    ),
{% endif %}

used as (
    -- Each user's features of each day (int_usage_user_days keeps only well-named ones).
    select
        user_days.activity_date,
        unnest(user_days.features) as used,
        user_days.user_id,
        crosswalk.customer_id
    from {{ ref('int_usage_user_days') }} as user_days
    inner join crosswalk
        on user_days.workspace_id = crosswalk.workspace_id
    {% if incremental %}
        where user_days.activity_date in (select activity_date from recompute)
    {% endif %}
)

select
    activity_date,
    used.feature,
    count(distinct user_id) as users_using,
    cast(sum(used.events) as bigint) as events,
    list_sort(list(distinct customer_id)) as customer_ids,
    {{ refreshed_at() }} as refreshed_at
from used
group by activity_date, used.feature
