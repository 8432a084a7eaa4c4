"""Usage event: product telemetry as the event collector delivers it, and feature adoption."""

from expectations.freshness_windows import timeliness_batch
from expectations.suite import DATA_ENG, PRODUCT, Batch, Suite, check
from expectations.suites.common import (
    EVENT_NAME_REGEX,
    NAME_MAX_LENGTH,
    hours_after_as_of,
    plain_text_check,
    with_text_problems,
)

# Events may arrive late (a client offline for a while); a day is the contract's limit.
LATE_AFTER_HOURS = 24
ARRIVAL_DAYS = 14

# The events themselves, row by row: a daily audit checks those the day's build wrote (new
# and late calls, calls placed in another account or customer); the mart replaces its rows by
# event id, so a slice without duplicates leaves none. The whole history is checked on a full
# refresh and on the Sunday run.
EVENTS = Batch(
    name="usage_events",
    key=("event_id",),
    incremental="marts.usage_events",
    sql=f"""
        select
            event_id, customer_id, event_type, event_name, occurred_at, received_at,
            -- Only track calls are named <domain>.<action>.<object>: page and screen names are
            -- titles, and identify, group and alias calls have no name at all.
            case when event_type = 'track' then event_name end as track_event_name,
            case when event_type = 'track' then coalesce(event_name, '') <> '' end as track_named,
            {hours_after_as_of("occurred_at")} as occurred_hours_after_as_of,
            (date_part('epoch', received_at) - date_part('epoch', occurred_at)) / 3600.0 as arrival_delay_hours,
            {with_text_problems({"event_name": NAME_MAX_LENGTH})}
        from marts.usage_events
        where $written_last
    """,
    checks=(
        check(
            "event_id_present",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every event has a message id",
            column="event_id",
        ),
        check(
            "event_name_present",
            "completeness",
            "blocking",
            PRODUCT,
            "expect_column_values_to_be_in_set",
            "Every track call has an event name",
            column="track_named",
            value_set=[True],
        ),
        check(
            "event_time_present",
            "completeness",
            "blocking",
            PRODUCT,
            "expect_column_values_to_not_be_null",
            "Every event has the time it happened",
            column="occurred_at",
        ),
        check(
            "event_customer_present",
            "completeness",
            "warning",
            DATA_ENG,
            "expect_column_values_to_not_be_null",
            "Every event comes from a workspace of a known customer",
            column="customer_id",
            causes=("a workspace that identity resolution cannot link to a customer",),
            action="Add the workspace id to the CRM company (product_workspace_id) or to the identity_overrides seed.",
        ),
        check(
            "event_name_follows_convention",
            "validity",
            "warning",
            PRODUCT,
            "expect_column_values_to_match_regex",
            "Track calls' event names follow <domain>.<action>.<object>, lower-case",
            column="track_event_name",
            regex=EVENT_NAME_REGEX,
            causes=(
                "a client release that tracks events under ad-hoc names",
                "a tracking plan not enforced at the collector",
            ),
            action="Product: rename the sampled events in the client's tracking code to the "
            "catalogue's names; consider rejecting unknown names at the collector.",
        ),
        check(
            "event_not_in_future",
            "validity",
            "warning",
            PRODUCT,
            "expect_column_values_to_be_between",
            "No event happened after the as-of time (hours after it: at most 0)",
            column="occurred_hours_after_as_of",
            max_value=0,
            causes=("a device whose clock runs ahead",),
            action="Product: have the collector stamp events with its own clock when the client's is implausible.",
        ),
        # Page and screen names are titles the client sends, shown as they come in reports.
        plain_text_check(
            "event_name_plain_text",
            PRODUCT,
            "event_name",
            "Event, page and screen names",
            action="Product: fix the sampled events' names in the client's tracking code.",
        ),
        check(
            "event_type_valid",
            "validity",
            "warning",
            PRODUCT,
            "expect_column_values_to_be_in_set",
            "Event types are the collector's: track, page, screen, identify, group or alias",
            column="event_type",
            value_set=["track", "page", "screen", "identify", "group", "alias"],
        ),
        check(
            "event_id_unique",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_column_values_to_be_unique",
            "Each message is stored once",
            column="event_id",
            causes=("a file delivered twice under different names and loaded twice",),
            action="Check the usage connector's dedup (message ids) and reload the source.",
        ),
        check(
            "events_arrive_on_time",
            "timeliness",
            "warning",
            DATA_ENG,
            "expect_column_values_to_be_between",
            f"At least 99% of events arrive within {LATE_AFTER_HOURS} h of happening "
            "(the late share is the unexpected share)",
            column="arrival_delay_hours",
            max_value=LATE_AFTER_HOURS,
            mostly=0.99,
            causes=(
                "clients offline for days that send their backlog when they reconnect",
                "the collector holding events back",
            ),
            action="Product: check the sampled events' clients; usage marts recompute the last "
            "14 days, so events later than that are missed by daily figures.",
        ),
    ),
)

VOLUME = Batch(
    name="usage_events_total",
    sql="select event_id from marts.usage_events",
    materialize=False,  # counted where it lies: a copy would hold every event id
    checks=(
        check(
            "events_not_empty",
            "completeness",
            "blocking",
            DATA_ENG,
            "expect_table_row_count_to_be_between",
            "The usage events mart is not empty",
            min_value=1,
        ),
    ),
)

ARRIVALS = Batch(
    name="usage_daily_arrivals",
    key=("day",),
    sql=f"""
        with days as (
            select cast(d as date) as day
            from generate_series(
                cast($as_of as date) - interval '{ARRIVAL_DAYS} day',
                cast($as_of as date) - interval '1 day',
                interval '1 day') as g (d)
        ),
        received as (
            select cast(received_at as date) as day, count(*) as events
            from marts.usage_events
            where received_at >= $as_of - interval '{ARRIVAL_DAYS} day' and received_at < $as_of
            group by 1
        )
        select days.day, coalesce(received.events, 0) as events_received
        from days left join received using (day)
    """,
    checks=(
        check(
            "events_received_every_day",
            "timeliness",
            "warning",
            DATA_ENG,
            "expect_column_values_to_be_between",
            f"The collector delivered events on each of the last {ARRIVAL_DAYS} days",
            column="events_received",
            min_value=1,
            causes=("the event collector stopped or lost its storage", "files land in another folder"),
            action="Check the collector and the landing folder; the sample names the silent days.",
        ),
    ),
)

ADOPTION = Batch(
    name="feature_adoption_daily",
    key=("activity_date", "feature"),
    sql="select activity_date, feature, adoption_rate from marts.feature_adoption_daily",
    checks=(
        check(
            "adoption_rate_in_range",
            "validity",
            "blocking",
            PRODUCT,
            "expect_column_values_to_be_between",
            "Adoption is a rate between 0 and 1",
            column="adoption_rate",
            min_value=0,
            max_value=1,
        ),
        check(
            "one_adoption_row_per_day_feature",
            "uniqueness",
            "blocking",
            DATA_ENG,
            "expect_compound_columns_to_be_unique",
            "One row per day and feature",
            column_list=["activity_date", "feature"],
        ),
    ),
)

SUITE = Suite(
    entity="usage_event",
    owner=PRODUCT,
    description="Product usage events as the collector delivers them, and daily feature adoption.",
    publishes=("usage_events", "feature_adoption_daily"),
    batches=(VOLUME, EVENTS, ARRIVALS, ADOPTION, timeliness_batch("usage_event")),
)
