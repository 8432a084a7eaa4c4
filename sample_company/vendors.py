"""Shape the simulated tables as each vendor's API objects.

Stripe-style billing objects use unix timestamps and nested lists, HubSpot-style CRM objects
carry every property as a string, Zendesk-style support objects use ISO timestamps. The local
vendor API serves these records as they are, so connectors see the vendors' real shapes.
"""

from __future__ import annotations

import polars as pl

from sample_company.simulate import Company

ISO_MS = "%Y-%m-%dT%H:%M:%S.000Z"
ISO_S = "%Y-%m-%dT%H:%M:%SZ"


def _unix(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Datetime("us")).dt.epoch("s")


def _iso(col: str, fmt: str = ISO_S) -> pl.Expr:
    return pl.col(col).cast(pl.Datetime("us")).dt.strftime(fmt)


def _str(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Utf8)


def _discount() -> pl.Expr:
    """Stripe's discount object where a coupon applies (null elsewhere)."""
    return pl.when(pl.col("discount_id").is_not_null()).then(
        pl.struct(
            pl.col("discount_id").alias("id"),
            pl.lit("discount").alias("object"),
            pl.struct(
                pl.col("coupon_id").alias("id"),
                pl.lit("coupon").alias("object"),
                pl.col("coupon_percent_off").alias("percent_off"),
                pl.col("coupon_amount_off").alias("amount_off"),
                pl.when(pl.col("coupon_amount_off").is_not_null()).then(pl.col("currency")).alias("currency"),
                pl.col("coupon_duration").alias("duration"),
                pl.col("coupon_duration_in_months").alias("duration_in_months"),
                pl.lit(True).alias("valid"),
            ).alias("coupon"),
            pl.col("stripe_customer_id").alias("customer"),
            pl.col("subscription_id").alias("subscription"),
            _unix("discount_start").alias("start"),
            _unix("discount_end").alias("end"),
        )
    )


def stripe(c: Company) -> dict[str, pl.DataFrame]:
    primary_email = c.contacts.group_by("crm_company_id", maintain_order=True).first().select(
        "crm_company_id", "email"
    )
    customers = c.companies.join(primary_email, on="crm_company_id", how="left", maintain_order="left").select(
        pl.col("stripe_customer_id").alias("id"),
        pl.lit("customer").alias("object"),
        _unix("created_at").alias("created"),
        pl.col("email"),
        pl.col("name"),
        pl.col("currency"),
        pl.struct(pl.col("crm_company_id").alias("hubspot_company_id")).alias("metadata"),
        pl.lit(False).alias("livemode"),
    )
    created0 = c.companies["created_at"].min()
    products = (
        c.prices.select("product_id", "product_name").unique(maintain_order=True).select(
            pl.col("product_id").alias("id"),
            pl.lit("product").alias("object"),
            pl.col("product_name").alias("name"),
            pl.lit(True).alias("active"),
            pl.lit(created0).cast(pl.Datetime("us")).dt.epoch("s").alias("created"),
        )
    )
    price_obj = c.prices.select(
        pl.col("price_id").alias("id"),
        pl.lit("price").alias("object"),
        pl.col("product_id").alias("product"),
        pl.col("unit_amount"),
        pl.col("currency"),
        pl.struct(pl.col("interval"), pl.lit(1).alias("interval_count")).alias("recurring"),
        pl.lit(True).alias("active"),
        pl.lit(created0).cast(pl.Datetime("us")).dt.epoch("s").alias("created"),
    )
    price_struct = price_obj.select(pl.col("id").alias("price_id"), pl.struct(pl.all()).alias("price"))

    # Current period of each subscription item: the invoice period covering `as_of`.
    last_period = c.invoices.group_by("subscription_id").agg(
        pl.col("period_start").max().alias("cps"), pl.col("period_end").max().alias("cpe")
    )
    subs = c.subscriptions.join(price_struct, on="price_id", how="left", maintain_order="left").join(
        last_period, on="subscription_id", how="left", maintain_order="left"
    )
    subs = subs.with_columns(
        pl.coalesce("cps", "trial_start").alias("cps"), pl.coalesce("cpe", "trial_end").alias("cpe")
    )
    item = pl.struct(
        pl.col("subscription_item_id").alias("id"),
        pl.lit("subscription_item").alias("object"),
        pl.col("price"),
        pl.col("quantity"),
        _unix("created").alias("created"),
        _unix("cps").alias("current_period_start"),
        _unix("cpe").alias("current_period_end"),
    )
    subscriptions = subs.select(
        pl.col("subscription_id").alias("id"),
        pl.lit("subscription").alias("object"),
        pl.col("stripe_customer_id").alias("customer"),
        pl.col("status"),
        pl.col("currency"),
        _unix("created").alias("created"),
        _unix("start_date").alias("start_date"),
        _unix("trial_start").alias("trial_start"),
        _unix("trial_end").alias("trial_end"),
        _unix("canceled_at").alias("canceled_at"),
        _unix("ended_at").alias("ended_at"),
        pl.lit(False).alias("cancel_at_period_end"),
        _discount().alias("discount"),
        pl.struct(
            pl.lit("list").alias("object"),
            pl.concat_list(item).alias("data"),
            pl.lit(False).alias("has_more"),
        ).alias("items"),
    )
    # Each invoice bills one line: the subscription's item as it stood when the period began.
    line = pl.struct(
        ("il_" + pl.col("invoice_id").str.slice(3)).alias("id"),
        pl.lit("line_item").alias("object"),
        pl.col("subtotal").alias("amount"),
        pl.col("currency"),
        (pl.col("quantity").cast(pl.Utf8) + " × " + pl.col("product_name")).alias("description"),
        pl.concat_list(
            pl.struct((pl.col("subtotal") - pl.col("total")).alias("amount"), pl.col("discount_id").alias("discount"))
        ).list.filter(pl.element().struct.field("amount") > 0).alias("discount_amounts"),
        pl.lit(True).alias("discountable"),
        pl.col("invoice_id").alias("invoice"),
        pl.struct(_unix("period_start").alias("start"), _unix("period_end").alias("end")).alias("period"),
        pl.struct(
            pl.lit("price_details").alias("type"),
            pl.struct(pl.col("price_id").alias("price"), pl.col("product_id").alias("product")).alias("price_details"),
            pl.col("unit_amount").cast(pl.Utf8).alias("unit_amount_decimal"),
        ).alias("pricing"),
        pl.col("quantity"),
        pl.struct(
            pl.lit("subscription_item_details").alias("type"),
            pl.struct(
                pl.col("subscription_id").alias("subscription"),
                pl.col("subscription_item_id").alias("subscription_item"),
                pl.lit(False).alias("proration"),
            ).alias("subscription_item_details"),
        ).alias("parent"),
    )
    billed = c.invoices.join(
        c.prices.select("price_id", "product_id", "product_name", "unit_amount"), on="price_id", how="left",
        maintain_order="left",
    ).join(c.subscriptions.select("subscription_id", "subscription_item_id"), on="subscription_id", how="left",
           maintain_order="left")
    invoices = billed.select(
        pl.col("invoice_id").alias("id"),
        pl.lit("invoice").alias("object"),
        pl.col("stripe_customer_id").alias("customer"),
        pl.col("status"),
        pl.col("billing_reason"),
        pl.col("currency"),
        pl.col("subtotal"),
        # The discount is subtotal - total (no taxes here); the coupon behind it is in `discount`.
        _discount().alias("discount"),
        pl.col("total"),
        pl.col("amount_due"),
        pl.col("amount_paid"),
        pl.col("amount_remaining"),
        pl.col("attempt_count"),
        pl.col("attempted"),
        _unix("created").alias("created"),
        _unix("period_start").alias("period_start"),
        _unix("period_end").alias("period_end"),
        pl.struct(
            pl.lit("subscription_details").alias("type"),
            pl.struct(pl.col("subscription_id").alias("subscription")).alias("subscription_details"),
        ).alias("parent"),
        pl.struct(
            pl.lit("list").alias("object"),
            pl.concat_list(line).alias("data"),
            pl.lit(False).alias("has_more"),
            pl.lit(1).alias("total_count"),
            ("/v1/invoices/" + pl.col("invoice_id") + "/lines").alias("url"),
        ).alias("lines"),
    )
    charges = c.charges.select(
        pl.col("charge_id").alias("id"),
        pl.lit("charge").alias("object"),
        pl.col("stripe_customer_id").alias("customer"),
        pl.col("invoice_id").alias("invoice"),
        pl.col("amount"),
        pl.col("amount_refunded"),
        pl.col("currency"),
        pl.col("status"),
        (pl.col("status") == "succeeded").alias("paid"),
        (pl.col("amount_refunded") >= pl.col("amount")).alias("refunded"),
        pl.col("failure_code"),
        pl.col("failure_message"),
        _unix("created").alias("created"),
    )
    refunds = c.refunds.select(
        pl.col("refund_id").alias("id"),
        pl.lit("refund").alias("object"),
        pl.col("charge_id").alias("charge"),
        pl.col("amount"),
        pl.col("currency"),
        pl.col("status"),
        _unix("created").alias("created"),
    )
    return {
        "customers": customers,
        "products": products,
        "prices": price_obj,
        "subscriptions": subscriptions,
        "invoices": invoices,
        "charges": charges,
        "refunds": refunds,
    }


def hubspot(c: Company) -> dict[str, pl.DataFrame]:
    companies = c.companies.select(
        pl.col("crm_company_id").alias("id"),
        pl.struct(
            pl.col("name"),
            pl.col("domain"),
            pl.col("industry"),
            pl.col("owner_id").alias("hubspot_owner_id"),
            pl.col("lifecycle_stage").alias("lifecyclestage"),
            pl.col("crm_status").alias("customer_status"),
            pl.col("annual_revenue").round(2).cast(pl.Utf8).alias("annualrevenue"),
            pl.col("stripe_customer_id"),
            pl.col("workspace_id").alias("product_workspace_id"),
            _iso("created_at", ISO_MS).alias("createdate"),
            _iso("updated_at", ISO_MS).alias("hs_lastmodifieddate"),
            pl.col("crm_company_id").alias("hs_object_id"),
        ).alias("properties"),
        _iso("created_at", ISO_MS).alias("createdAt"),
        _iso("updated_at", ISO_MS).alias("updatedAt"),
        pl.lit(False).alias("archived"),
    )
    contacts = c.contacts.select(
        pl.col("crm_contact_id").alias("id"),
        pl.struct(
            pl.col("email"),
            pl.col("first_name").alias("firstname"),
            pl.col("last_name").alias("lastname"),
            pl.col("job_title").alias("jobtitle"),
            pl.col("crm_company_id").alias("associatedcompanyid"),
            _iso("created_at", ISO_MS).alias("createdate"),
            _iso("updated_at", ISO_MS).alias("lastmodifieddate"),
            pl.col("crm_contact_id").alias("hs_object_id"),
        ).alias("properties"),
        _iso("created_at", ISO_MS).alias("createdAt"),
        _iso("updated_at", ISO_MS).alias("updatedAt"),
        pl.lit(False).alias("archived"),
    )
    deals = c.deals.select(
        pl.col("crm_deal_id").alias("id"),
        pl.struct(
            pl.col("deal_name").alias("dealname"),
            pl.col("amount").round(2).cast(pl.Utf8).alias("amount"),
            pl.col("deal_stage").alias("dealstage"),
            pl.lit("default").alias("pipeline"),
            _iso("close_date", ISO_MS).alias("closedate"),
            _iso("created_at", ISO_MS).alias("createdate"),
            _iso("updated_at", ISO_MS).alias("hs_lastmodifieddate"),
            pl.col("crm_deal_id").alias("hs_object_id"),
        ).alias("properties"),
        _iso("created_at", ISO_MS).alias("createdAt"),
        _iso("updated_at", ISO_MS).alias("updatedAt"),
        pl.lit(False).alias("archived"),
        pl.struct(
            pl.struct(
                pl.concat_list(
                    pl.struct(pl.col("crm_company_id").alias("id"), pl.lit("deal_to_company").alias("type"))
                ).alias("results")
            ).alias("companies")
        ).alias("associations"),
    )
    return {"companies": companies, "contacts": contacts, "deals": deals}


def zendesk(c: Company) -> dict[str, pl.DataFrame]:
    organizations = c.companies.select(
        pl.col("zendesk_organization_id").alias("id"),
        pl.col("name"),
        pl.col("crm_company_id").alias("external_id"),
        pl.concat_list(pl.col("domain")).alias("domain_names"),
        pl.struct(pl.col("tier").alias("plan_tier")).alias("organization_fields"),
        _iso("created_at").alias("created_at"),
        _iso("created_at").alias("updated_at"),
    )
    org_of = c.companies.select("crm_company_id", "zendesk_organization_id")
    users = c.contacts.join(org_of, on="crm_company_id", how="left", maintain_order="left").select(
        pl.col("zendesk_user_id").alias("id"),
        (pl.col("first_name") + " " + pl.col("last_name")).alias("name"),
        pl.col("email"),
        pl.lit("end-user").alias("role"),
        pl.col("zendesk_organization_id").alias("organization_id"),
        pl.lit(True).alias("active"),
        _iso("created_at").alias("created_at"),
        _iso("updated_at").alias("updated_at"),
    )
    tickets = c.tickets.select(
        pl.col("ticket_id").alias("id"),
        pl.col("subject"),
        pl.col("status"),
        pl.col("priority"),
        pl.col("requester_id"),
        pl.col("zendesk_organization_id").alias("organization_id"),
        _iso("created_at").alias("created_at"),
        _iso("updated_at").alias("updated_at"),
        pl.concat_list(
            pl.struct(pl.lit(360_000_101).alias("id"), pl.col("priority").alias("value"))
        ).alias("custom_fields"),
    )
    def minutes(name: str) -> pl.Expr:
        """Zendesk's {calendar, business} pair of a duration in minutes (both null if none)."""
        return pl.struct(pl.col(f"{name}_minutes").alias("calendar"), pl.col(f"{name}_business_minutes").alias("business"))

    ticket_metrics = c.tickets.select(
        pl.col("ticket_id").alias("id"),
        pl.col("ticket_id"),
        _iso("created_at").alias("created_at"),
        _iso("updated_at").alias("updated_at"),
        _iso("solved_at").alias("solved_at"),
        _iso("updated_at").alias("status_updated_at"),
        pl.col("replies"),
        pl.col("reopens"),
        minutes("first_reply").alias("reply_time_in_minutes"),
        minutes("first_resolution").alias("first_resolution_time_in_minutes"),
        minutes("full_resolution").alias("full_resolution_time_in_minutes"),
    )
    satisfaction_ratings = c.satisfaction_ratings.select(
        pl.col("rating_id").alias("id"),
        pl.col("ticket_id"),
        pl.col("requester_id"),
        pl.col("zendesk_organization_id").alias("organization_id"),
        pl.col("score"),
        _iso("created_at").alias("created_at"),
        _iso("created_at").alias("updated_at"),
    )
    return {
        "organizations": organizations,
        "users": users,
        "tickets": tickets,
        "ticket_metrics": ticket_metrics,
        "satisfaction_ratings": satisfaction_ratings,
    }


def usage_events(c: Company) -> pl.DataFrame:
    """Track calls as an event collector writes them (one JSON object per line), with the day
    the collector received each one (`_day`): its file is that day's."""
    return c.events.select(
        pl.col("event_id").alias("message_id"),
        pl.lit("track").alias("type"),
        pl.col("event"),
        pl.col("user_id"),
        pl.col("account_id"),
        _iso("timestamp", ISO_MS).alias("timestamp"),
        _iso("received_at", ISO_MS).alias("received_at"),
        pl.struct(pl.col("plan")).alias("properties"),
        pl.col("received_at").cast(pl.Date).alias("_day"),
    )
