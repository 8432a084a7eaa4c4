"""The simulated product events as each collector writes them (variant `events`).

    spine        our collector's snake_case track calls
    segment      the Segment tracking-API spec as Segment stores it: track calls, and at each
                 user's first event an identify call (traits: email, name; context.groupId: the
                 workspace) and a group call (groupId: the workspace; traits: name, website);
                 a share of track calls leave `context.groupId` off, as clients that set it
                 only sometimes do
    rudderstack  the same spec as RudderStack's gateway stores it (channel `web`, a `rudderId`
                 hash of the user ids, no `timestamp`: readers take `originalTimestamp`)
    snowplow     enriched events in the JSON the Snowplow Analytics SDK's `transform` returns:
                 structured events (category: the name's domain, action: the event name,
                 label: the plan) carrying the workspace entity
                 `contexts_io_dataspine_workspace_1` (the SDK's key for
                 `iglu:io.dataspine/workspace/jsonschema/1-0-0`)

Every rendering keeps what the manifest says about the events: a product event's message id is
the simulated `event_id`, and its name, time and arrival are the simulated ones, defects
included (clients whose clocks run ahead keep their time: Segment's `timestamp` is written as
the client sent it, Snowplow's `true_tstamp` is set, so `derived_tstamp` takes it). Identify
and group calls are sent with the user's first event and received with it; they happen just
before it is received, so they are never late and never in the future. Every frame has `_day`,
the day its line was received (its file). Lines carry every column of the frame, null where a
call has no such field.
"""

from __future__ import annotations

import hashlib
import uuid

import polars as pl

from sample_company.simulate import Company

ISO_MS = "%Y-%m-%dT%H:%M:%S%.3fZ"
ISO_S = "%Y-%m-%dT%H:%M:%SZ"
# Event ids are base62 tokens: ending in one of these 16 characters puts a track call among
# the ~26% sent without `context.groupId`.
WITHOUT_GROUP = list("0123456789ABCDEF")
SNOWPLOW_ACCOUNT_ENTITY = "contexts_io_dataspine_workspace_1"
LIBRARY = {
    "segment": {"name": "analytics.js", "version": "4.1.0"},
    "rudderstack": {"name": "RudderLabs JavaScript SDK", "version": "3.7.4"},
}
CHANNEL = {"segment": "browser", "rudderstack": "web"}


def _iso(col: str | pl.Expr, fmt: str = ISO_MS) -> pl.Expr:
    expr = pl.col(col) if isinstance(col, str) else col
    return expr.cast(pl.Datetime("us")).dt.strftime(fmt)


def _day(col: str = "received_at") -> pl.Expr:
    return pl.col(col).cast(pl.Date).alias("_day")


def spine(c: Company) -> pl.DataFrame:
    return c.events.select(
        pl.col("event_id").alias("message_id"),
        pl.lit("track").alias("type"),
        pl.col("event"),
        pl.col("user_id"),
        pl.col("account_id"),
        _iso("timestamp", "%Y-%m-%dT%H:%M:%S.000Z").alias("timestamp"),
        _iso("received_at", "%Y-%m-%dT%H:%M:%S.000Z").alias("received_at"),
        pl.struct(pl.col("plan")).alias("properties"),
        _day(),
    )


def _people(c: Company) -> pl.DataFrame:
    """Per product user: the device id a browser SDK gives them and what identify says."""
    users = c.contacts.select(
        pl.col("product_user_id").alias("user_id"),
        pl.col("email"),
        (pl.col("first_name") + " " + pl.col("last_name")).alias("name"),
    )
    # One hash per user (not per event): ids that look like a browser SDK's, the same every run.
    anonymous = [str(uuid.UUID(bytes=hashlib.blake2b(u.encode(), digest_size=16).digest())) for u in users["user_id"]]
    return users.with_columns(pl.Series("anonymous_id", anonymous, pl.String))


def _rudder_ids(people: pl.DataFrame) -> pl.Series:
    # RudderStack's gateway: an MD5-based UUID of "<userId>:<anonymousId>".
    return pl.Series(
        "rudder_id",
        [
            str(uuid.UUID(bytes=hashlib.md5(f"{u}:{a}".encode()).digest()))
            for u, a in zip(people["user_id"], people["anonymous_id"])
        ],
        pl.String,
    )


def _first_events(events: pl.DataFrame) -> pl.DataFrame:
    """Each user's first event, in the simulation's order."""
    return events.unique(subset="user_id", keep="first", maintain_order=True)


def _lines(frame: pl.DataFrame, columns: dict[str, pl.DataType], fields: dict[str, pl.Expr]) -> pl.DataFrame:
    """`frame` as lines with `columns` in order: `fields` where the call has them, null elsewhere."""
    return frame.select(*(fields.get(name, pl.lit(None, dtype)).alias(name) for name, dtype in columns.items()), _day())


def _fixed(text: str) -> pl.Expr:
    # The same text on every line: categorical, so ten million lines hold it once.
    return pl.lit(text).cast(pl.Categorical)


def _segment_lines(c: Company, flavour: str) -> pl.DataFrame:
    people = _people(c)
    if flavour == "rudderstack":
        people = people.with_columns(_rudder_ids(people))
    companies = c.companies.select(
        pl.col("workspace_id").alias("account_id"),
        pl.col("name").alias("account_name"),
        ("https://" + pl.col("domain")).alias("website"),
    )
    library = pl.struct(
        _fixed(LIBRARY[flavour]["name"]).alias("name"), _fixed(LIBRARY[flavour]["version"]).alias("version")
    )
    context = pl.Struct(
        {"groupId": pl.String, "library": pl.Struct({"name": pl.Categorical, "version": pl.Categorical})}
    )
    traits = pl.Struct({"email": pl.String, "name": pl.String, "website": pl.String})
    columns = {
        "anonymousId": pl.Categorical,
        "channel": pl.Categorical,
        "context": context,
        "event": pl.String,
        "groupId": pl.String,
        "messageId": pl.String,
        "originalTimestamp": pl.String,
        "properties": pl.Struct({"plan": pl.String}),
        "receivedAt": pl.String,
        "sentAt": pl.String,
    }
    if flavour == "segment":
        columns |= {
            "timestamp": pl.String,
            "traits": traits,
            "type": pl.Categorical,
            "userId": pl.String,
            "version": pl.Categorical,
        }
    else:
        columns |= {"rudderId": pl.Categorical, "traits": traits, "type": pl.Categorical, "userId": pl.String}

    def device(column: str) -> pl.Expr:
        return pl.col("user_id").replace_strict(people["user_id"], people[column]).cast(pl.Categorical)

    def sent_at(instant: str) -> dict[str, pl.Expr]:
        # Segment's timestamp is written as the client sent it (see the module doc).
        sent = pl.col(instant)
        return {"originalTimestamp": sent, "sentAt": sent, "timestamp": sent}

    common = {
        "anonymousId": device("anonymous_id"),
        "channel": _fixed(CHANNEL[flavour]),
        "userId": pl.col("user_id"),
        "receivedAt": pl.col("_received"),
        "version": _fixed("1.1"),
        **({"rudderId": device("rudder_id")} if flavour == "rudderstack" else {}),
    }
    # Each instant is formatted once and its text shared by every field that carries it.
    events = c.events.with_columns(_iso("timestamp").alias("_sent"), _iso("received_at").alias("_received"))
    track = _lines(
        events,
        columns,
        common
        | sent_at("_sent")
        | {
            "messageId": pl.col("event_id"),
            "type": _fixed("track"),
            "event": pl.col("event"),
            "context": pl.struct(
                pl.when(pl.col("event_id").str.slice(-1).is_in(WITHOUT_GROUP))
                .then(None)
                .otherwise(pl.col("account_id"))
                .alias("groupId"),
                library.alias("library"),
            ),
            "properties": pl.struct(pl.col("plan")),
        },
    )
    # Identify and group go out with the first event, and happen a second before it arrives
    # (at the latest a second before the history ends).
    first = (
        _first_events(c.events)
        .with_columns(
            _iso(
                pl.min_horizontal(
                    pl.col("received_at") - pl.duration(seconds=1), pl.lit(c.end) - pl.duration(seconds=1)
                )
            ).alias("_at"),
            _iso("received_at").alias("_received"),
        )
        .join(people, on="user_id", how="left", maintain_order="left")
        .join(companies, on="account_id", how="left", maintain_order="left")
    )
    token = pl.col("event_id").str.strip_prefix("evt_")
    identify = _lines(
        first,
        columns,
        common
        | sent_at("_at")
        | {
            "messageId": "idn_" + token,
            "type": _fixed("identify"),
            "traits": pl.struct(pl.col("email"), pl.col("name"), pl.lit(None, pl.String).alias("website")),
            # The client knows the workspace by then, so identify carries it too.
            "context": pl.struct(pl.col("account_id").alias("groupId"), library.alias("library")),
        },
    )
    group = _lines(
        first,
        columns,
        common
        | sent_at("_at")
        | {
            "messageId": "grp_" + token,
            "type": _fixed("group"),
            "groupId": pl.col("account_id"),
            "traits": pl.struct(
                pl.lit(None, pl.String).alias("email"), pl.col("account_name").alias("name"), pl.col("website")
            ),
            "context": pl.struct(pl.lit(None, pl.String).alias("groupId"), library.alias("library")),
        },
    )
    # A day's identify and group calls open its file; ordering the lines any finer would
    # cost a sort of every column of every event. One contiguous frame: the writer gathers
    # each day's lines from it, and a gather over pieces is many times slower.
    return pl.concat([identify, group, track], rechunk=True)


def segment(c: Company) -> pl.DataFrame:
    return _segment_lines(c, "segment")


def rudderstack(c: Company) -> pl.DataFrame:
    return _segment_lines(c, "rudderstack")


def snowplow(c: Company) -> pl.DataFrame:
    people = _people(c).select(
        "user_id", pl.col("anonymous_id").str.replace_all("-", "").str.slice(0, 16).alias("domain_userid")
    )
    events = c.events.join(people, on="user_id", how="left", maintain_order="left").with_columns(
        _iso("timestamp").alias("_happened"), _iso("received_at").alias("_received")
    )
    happened = pl.col("_happened")
    return events.select(
        pl.lit("dataspine-app").alias("app_id"),
        pl.lit("web").alias("platform"),
        pl.col("_received").alias("etl_tstamp"),
        _iso("received_at", ISO_S).alias("collector_tstamp"),
        happened.alias("dvce_created_tstamp"),
        pl.lit("struct").alias("event"),
        pl.col("event_id"),
        pl.lit("sp").alias("name_tracker"),
        pl.lit("js-3.24.0").alias("v_tracker"),
        pl.lit("ssc-3.2.0-kinesis").alias("v_collector"),
        pl.lit("snowplow-enrich-kinesis-5.0.0").alias("v_etl"),
        pl.col("user_id"),
        pl.col("domain_userid"),
        pl.col("event").str.split(".").list.first().alias("se_category"),
        pl.col("event").alias("se_action"),
        pl.col("plan").alias("se_label"),
        pl.concat_list(pl.struct(pl.col("account_id").alias("id"))).alias(SNOWPLOW_ACCOUNT_ENTITY),
        happened.alias("dvce_sent_tstamp"),
        happened.alias("derived_tstamp"),
        pl.lit("com.google.analytics").alias("event_vendor"),
        pl.lit("event").alias("event_name"),
        pl.lit("jsonschema").alias("event_format"),
        pl.lit("1-0-0").alias("event_version"),
        happened.alias("true_tstamp"),
        _day(),
    )


RENDER = {"spine": spine, "segment": segment, "rudderstack": rudderstack, "snowplow": snowplow}


def render(c: Company, events_format: str) -> pl.DataFrame:
    return RENDER[events_format](c)
