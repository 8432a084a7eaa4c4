"""Shape the simulated tables as each vendor's API objects.

Stripe-style billing objects use unix timestamps and nested lists, HubSpot-style CRM objects
carry every property as a string, Zendesk-style support objects use ISO timestamps. The local
vendor API serves these records as they are, so connectors see the vendors' real shapes.
"""

from __future__ import annotations

import hashlib

import polars as pl

from sample_company import event_formats
from sample_company.simulate import Company
from sample_company.variants import Variant

ISO_MS = "%Y-%m-%dT%H:%M:%S.000Z"
ISO_S = "%Y-%m-%dT%H:%M:%SZ"


def _unix(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Datetime("us")).dt.epoch("s")


def _iso(col: str, fmt: str = ISO_S) -> pl.Expr:
    return pl.col(col).cast(pl.Datetime("us")).dt.strftime(fmt)


def generated_id(prefix: str, name: pl.Expr) -> pl.Expr:
    """An id as Stripe generates them (`prod_Q3x9...`), the same for the same name: its text
    says nothing about what it names."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return name.map_elements(
        lambda n: prefix + "".join(alphabet[b % 62] for b in hashlib.blake2b(n.encode(), digest_size=14).digest()),
        return_dtype=pl.String,
    )


def _catalog(c: Company, variant: Variant) -> pl.DataFrame:
    """The price catalogue with the ids the account shows (named or generated) and the tier
    behind each price, which the account records in product metadata, if at all."""
    prices = c.prices.with_columns(
        pl.col("product_id").str.strip_prefix("prod_").alias("tier"),
        pl.col("product_id").alias("named_product_id"),
        pl.col("price_id").alias("named_price_id"),
    )
    if variant.product_ids == "generated":
        prices = prices.with_columns(
            generated_id("prod_", pl.col("named_product_id")).alias("product_id"),
            generated_id("price_", pl.col("named_price_id")).alias("price_id"),
        )
    return prices.with_columns(
        # A lookup key as teams name them: what the price sells, never an id.
        (pl.col("tier") + "_" + pl.col("interval") + "ly_" + pl.col("currency")).alias("lookup_key")
    )


def _renamed(df: pl.DataFrame, catalog: pl.DataFrame, column: str = "price_id") -> pl.DataFrame:
    """`df` with its catalogue ids (prices, and products where it has them) as the account shows them."""
    ids = catalog.select(
        pl.col("named_price_id").alias(column),
        pl.col("price_id").alias("_price"),
        pl.col("product_id").alias("_product"),
    )
    df = df.join(ids, on=column, how="left", maintain_order="left").with_columns(pl.col("_price").alias(column))
    if "product_id" in df.columns:
        df = df.with_columns(pl.col("_product").alias("product_id"))
    return df.drop("_price", "_product")


def stripe(c: Company, variant: Variant | None = None) -> dict[str, pl.DataFrame]:
    """Billing objects in the current API version's shape (what the local API stores; it renders
    older versions from these, see `vendor_api/stripe.py`)."""
    variant = variant or Variant()
    custom = variant.has_custom_fields
    primary_email = c.contacts.group_by("crm_company_id", maintain_order=True).first().select("crm_company_id", "email")
    customers = c.companies.join(primary_email, on="crm_company_id", how="left", maintain_order="left").select(
        pl.col("stripe_customer_id").alias("id"),
        pl.lit("customer").alias("object"),
        _unix("created_at").alias("created"),
        pl.col("email"),
        pl.col("name"),
        pl.col("currency"),
        (
            pl.struct(pl.col("crm_company_id").alias("hubspot_company_id")) if custom else pl.lit({}, pl.Struct({}))
        ).alias("metadata"),
        pl.lit(False).alias("livemode"),
    )
    created0 = c.companies["created_at"].min()
    catalog = _catalog(c, variant)
    products = (
        catalog.select("product_id", "product_name", "tier")
        .unique(subset="product_id", maintain_order=True)
        .select(
            pl.col("product_id").alias("id"),
            pl.lit("product").alias("object"),
            pl.col("product_name").alias("name"),
            pl.lit(True).alias("active"),
            pl.lit(created0).cast(pl.Datetime("us")).dt.epoch("s").alias("created"),
            (pl.struct(pl.col("tier").alias("plan_tier")) if custom else pl.lit({}, pl.Struct({}))).alias("metadata"),
            pl.lit(False).alias("livemode"),
        )
    )
    price_obj = catalog.select(
        pl.col("price_id").alias("id"),
        pl.lit("price").alias("object"),
        pl.col("product_id").alias("product"),
        pl.col("unit_amount"),
        pl.col("currency"),
        pl.struct(pl.col("interval"), pl.lit(1).alias("interval_count"), pl.lit("licensed").alias("usage_type")).alias(
            "recurring"
        ),
        pl.lit("recurring").alias("type"),
        pl.col("lookup_key"),
        pl.lit(True).alias("active"),
        pl.lit(created0).cast(pl.Datetime("us")).dt.epoch("s").alias("created"),
        pl.lit(False).alias("livemode"),
    )
    price_struct = price_obj.select(pl.col("id").alias("price_id"), pl.struct(pl.all()).alias("price"))

    # Coupons and the discounts that apply them (one per subscription with a coupon). A
    # discount stays referenced by the invoices it reduced after it stops applying.
    applied = (
        pl.concat(
            [
                c.subscriptions.select(
                    "subscription_id",
                    "stripe_customer_id",
                    "discount_id",
                    "coupon_id",
                    "coupon_percent_off",
                    "coupon_amount_off",
                    "coupon_duration",
                    "coupon_duration_in_months",
                    "currency",
                    "discount_start",
                    "discount_end",
                ),
                c.invoices.select(
                    "subscription_id",
                    "stripe_customer_id",
                    "discount_id",
                    "coupon_id",
                    "coupon_percent_off",
                    "coupon_amount_off",
                    "coupon_duration",
                    "coupon_duration_in_months",
                    "currency",
                    "discount_start",
                    "discount_end",
                ),
            ]
        )
        .filter(pl.col("discount_id").is_not_null())
        .unique(subset="discount_id", keep="first", maintain_order=True)
    )
    discounts = applied.select(
        pl.col("discount_id").alias("id"),
        pl.lit("discount").alias("object"),
        pl.struct(pl.lit("coupon").alias("type"), pl.col("coupon_id").alias("coupon")).alias("source"),
        pl.col("stripe_customer_id").alias("customer"),
        pl.col("subscription_id").alias("subscription"),
        pl.lit(None, pl.String).alias("subscription_item"),
        pl.lit(None, pl.String).alias("invoice"),
        pl.lit(None, pl.String).alias("invoice_item"),
        pl.lit(None, pl.String).alias("promotion_code"),
        _unix("discount_start").alias("start"),
        _unix("discount_end").alias("end"),
    )
    coupons = (
        applied.unique(subset="coupon_id", keep="first", maintain_order=True)
        .select(
            pl.col("coupon_id").alias("id"),
            pl.lit("coupon").alias("object"),
            pl.col("coupon_id").alias("name"),
            pl.col("coupon_duration").alias("duration"),
            pl.col("coupon_duration_in_months").alias("duration_in_months"),
            pl.col("coupon_percent_off").cast(pl.Float64).alias("percent_off"),
            pl.col("coupon_amount_off").alias("amount_off"),
            pl.when(pl.col("coupon_amount_off").is_not_null()).then(pl.col("currency")).alias("currency"),
            pl.lit(True).alias("valid"),
            pl.lit(created0).cast(pl.Datetime("us")).dt.epoch("s").alias("created"),
            pl.lit(False).alias("livemode"),
        )
        .sort("id")
    )

    # Current period of each subscription item: the invoice period covering `as_of`.
    last_period = c.invoices.group_by("subscription_id").agg(
        pl.col("period_start").max().alias("cps"), pl.col("period_end").max().alias("cpe")
    )
    subs = (
        _renamed(c.subscriptions, catalog)
        .join(price_struct, on="price_id", how="left", maintain_order="left")
        .join(last_period, on="subscription_id", how="left", maintain_order="left")
    )
    subs = subs.with_columns(
        pl.coalesce("cps", "trial_start", "start_date").alias("cps"), pl.coalesce("cpe", "trial_end").alias("cpe")
    )
    item = pl.struct(
        pl.col("subscription_item_id").alias("id"),
        pl.lit("subscription_item").alias("object"),
        pl.col("price"),
        pl.col("quantity"),
        _unix("created").alias("created"),
        _unix("cps").alias("current_period_start"),
        _unix("cpe").alias("current_period_end"),
        pl.lit([], pl.List(pl.String)).alias("discounts"),
    )

    def ids(column: str) -> pl.Expr:
        """A list of the one id in `column`, empty where it is null."""
        return (
            pl.when(pl.col(column).is_not_null())
            .then(pl.concat_list(pl.col(column)))
            .otherwise(pl.lit([], pl.List(pl.String)))
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
        pl.lit(None, pl.Int64).alias("cancel_at"),
        pl.lit(False).alias("cancel_at_period_end"),
        pl.lit(None, pl.Struct({"behavior": pl.String, "resumes_at": pl.Int64})).alias("pause_collection"),
        # The discounts applying now (Stripe removes one that ran out).
        ids("discount_id").alias("discounts"),
        pl.lit({}, pl.Struct({})).alias("metadata"),
        pl.struct(
            pl.lit("list").alias("object"),
            pl.concat_list(item).alias("data"),
            pl.lit(False).alias("has_more"),
        ).alias("items"),
        pl.lit(False).alias("livemode"),
    )
    # Each invoice bills one line: the subscription's item as it stood when the period began.
    discount_amounts = pl.concat_list(
        pl.struct((pl.col("subtotal") - pl.col("total")).alias("amount"), pl.col("discount_id").alias("discount"))
    ).list.filter(pl.element().struct.field("amount") > 0)
    line = pl.struct(
        ("il_" + pl.col("invoice_id").str.slice(3)).alias("id"),
        pl.lit("line_item").alias("object"),
        pl.col("subtotal").alias("amount"),
        pl.col("currency"),
        (pl.col("quantity").cast(pl.Utf8) + " × " + pl.col("product_name")).alias("description"),
        discount_amounts.alias("discount_amounts"),
        ids("discount_id").alias("discounts"),
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
                pl.lit(None, pl.String).alias("invoice_item"),
                pl.lit(False).alias("proration"),
            ).alias("subscription_item_details"),
        ).alias("parent"),
        pl.lit({}, pl.Struct({})).alias("metadata"),
    )
    billed = _renamed(
        c.invoices.join(
            c.prices.select("price_id", "product_id", "product_name", "unit_amount"),
            on="price_id",
            how="left",
            maintain_order="left",
        ),
        catalog,
    ).join(
        c.subscriptions.select("subscription_id", "subscription_item_id"),
        on="subscription_id",
        how="left",
        maintain_order="left",
    )
    invoices = billed.select(
        pl.col("invoice_id").alias("id"),
        pl.lit("invoice").alias("object"),
        pl.col("stripe_customer_id").alias("customer"),
        pl.col("status"),
        pl.col("billing_reason"),
        pl.col("currency"),
        pl.col("subtotal"),
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
        # The discount is subtotal - total (no taxes here).
        ids("discount_id").alias("discounts"),
        discount_amounts.alias("total_discount_amounts"),
        pl.struct(
            pl.lit("list").alias("object"),
            pl.concat_list(line).alias("data"),
            pl.lit(False).alias("has_more"),
            pl.lit(1).alias("total_count"),
            ("/v1/invoices/" + pl.col("invoice_id") + "/lines").alias("url"),
        ).alias("lines"),
        pl.lit({}, pl.Struct({})).alias("metadata"),
        pl.lit(False).alias("livemode"),
    )
    # Every attempt to pay an invoice goes through one PaymentIntent; since 2025-03-31 a
    # charge no longer names its invoice, the invoice's payment names the PaymentIntent.
    intent = "pi_" + pl.col("invoice_id").str.slice(3)
    charged = c.invoices.filter(pl.col("attempted"))
    invoice_payments = charged.select(
        ("inpay_" + pl.col("invoice_id").str.slice(3)).alias("id"),
        pl.lit("invoice_payment").alias("object"),
        pl.col("invoice_id").alias("invoice"),
        pl.col("amount_due").alias("amount_requested"),
        pl.when(pl.col("status") == "paid").then(pl.col("amount_paid")).alias("amount_paid"),
        pl.col("currency"),
        pl.when(pl.col("status") == "paid")
        .then(pl.lit("paid"))
        .when(pl.col("status") == "open")
        .then(pl.lit("open"))
        .otherwise(pl.lit("canceled"))
        .alias("status"),
        pl.lit(True).alias("is_default"),
        _unix("created").alias("created"),
        pl.struct(pl.lit("payment_intent").alias("type"), intent.alias("payment_intent")).alias("payment"),
        pl.lit(False).alias("livemode"),
    )
    charges = c.charges.select(
        pl.col("charge_id").alias("id"),
        pl.lit("charge").alias("object"),
        pl.col("stripe_customer_id").alias("customer"),
        intent.alias("payment_intent"),
        pl.col("amount"),
        pl.col("amount_refunded"),
        pl.col("currency"),
        pl.col("status"),
        (pl.col("status") == "succeeded").alias("paid"),
        (pl.col("amount_refunded") >= pl.col("amount")).alias("refunded"),
        pl.col("failure_code"),
        pl.col("failure_message"),
        _unix("created").alias("created"),
        pl.lit(False).alias("livemode"),
    )
    payment_intent_of = c.charges.select("charge_id", intent.alias("payment_intent"))
    refunds = c.refunds.join(payment_intent_of, on="charge_id", how="left", maintain_order="left").select(
        pl.col("refund_id").alias("id"),
        pl.lit("refund").alias("object"),
        pl.col("charge_id").alias("charge"),
        pl.col("payment_intent"),
        pl.col("amount"),
        pl.col("currency"),
        pl.col("status"),
        _unix("created").alias("created"),
    )
    return {
        "customers": customers,
        "products": products,
        "prices": price_obj,
        "coupons": coupons,
        "subscriptions": subscriptions,
        "discounts": discounts,
        "invoices": invoices,
        "invoice_payments": invoice_payments,
        "charges": charges,
        "refunds": refunds,
    }


# The CRM's custom company properties: links to billing and the product, and a status field.
CUSTOM_COMPANY_PROPERTIES = ("customer_status", "stripe_customer_id", "product_workspace_id")


def hubspot(c: Company, variant: Variant | None = None) -> dict[str, pl.DataFrame]:
    custom = (variant or Variant()).has_custom_fields
    companies = c.companies.select(
        pl.col("crm_company_id").alias("id"),
        pl.struct(
            pl.col("name"),
            pl.col("domain"),
            pl.col("industry"),
            pl.col("owner_id").alias("hubspot_owner_id"),
            pl.col("lifecycle_stage").alias("lifecyclestage"),
            pl.col("annual_revenue").round(2).cast(pl.Utf8).alias("annualrevenue"),
            *(
                [
                    pl.col("crm_status").alias("customer_status"),
                    pl.col("stripe_customer_id"),
                    pl.col("workspace_id").alias("product_workspace_id"),
                ]
                if custom
                else []
            ),
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


def zendesk(c: Company, variant: Variant | None = None) -> dict[str, pl.DataFrame]:
    custom = (variant or Variant()).has_custom_fields
    organizations = c.companies.select(
        pl.col("zendesk_organization_id").alias("id"),
        pl.col("name"),
        # The CRM company's id, where the team keeps it in sync (a convention, not a given).
        (pl.col("crm_company_id") if custom else pl.lit(None, pl.String)).alias("external_id"),
        pl.concat_list(pl.col("domain")).alias("domain_names"),
        (pl.struct(pl.col("tier").alias("plan_tier")) if custom else pl.lit({}, pl.Struct({}))).alias(
            "organization_fields"
        ),
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
        pl.concat_list(pl.struct(pl.lit(360_000_101).alias("id"), pl.col("priority").alias("value"))).alias(
            "custom_fields"
        ),
    )

    def minutes(name: str) -> pl.Expr:
        """Zendesk's {calendar, business} pair of a duration in minutes (both null if none)."""
        return pl.struct(
            pl.col(f"{name}_minutes").alias("calendar"), pl.col(f"{name}_business_minutes").alias("business")
        )

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


def usage_events(c: Company, variant: Variant | None = None) -> pl.DataFrame:
    """Calls as the account's event collector writes them (one JSON object per line, in the
    format `variant.events` names; see `sample_company.event_formats`), with the day the
    collector received each one (`_day`): its file is that day's."""

    return event_formats.render(c, (variant or Variant()).events)
