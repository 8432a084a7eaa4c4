"""How vendor-realistic the sample company looks: the shapes real accounts send.

The default company is friendly to read (product ids named after plans, every custom field
filled, our collector's own event shape). Real accounts are not, and the pipeline must not
care: a variant changes how the same company looks at its vendors, never what happened.

    stripe_api     the Stripe account's API version: the shape its objects are served in
                   (`2024-06-20` before the 2025-03-31 changes, `2025-03-31.basil`, or
                   `2025-09-30.clover`, the current shape, the default)
    product_ids    `named` (prod_growth) or `generated` (prod_Q3x9..., as Stripe makes them)
    custom_fields  `present` or `absent`: the CRM's custom company properties
                   (customer_status, stripe_customer_id, product_workspace_id), Stripe's
                   metadata (hubspot_company_id, plan_tier) and Zendesk's organization fields
                   and external ids are left unset
    events         the event collector's format: `spine` (our own snake_case track calls),
                   `segment`, `rudderstack` (the Segment spec, camelCase, with identify and group
                   calls) or `snowplow` (enriched events as the Analytics SDK emits them)
    trials         `yes` (every subscription starts with a 14-day trial) or `no`
    coupons        `yes` (a fifth of subscriptions carry a coupon) or `no`

Written as `name=value,...` (`spine generate --variant stripe_api=2024-06-20,events=segment`,
or `SPINE_VARIANT`), recorded in the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

# Stripe API versions the local stand-in can render, oldest first. Objects are stored in the
# newest shape and rendered down for accounts pinned to an older version.
STRIPE_VERSIONS = ("2024-06-20", "2025-03-31.basil", "2025-09-30.clover")
LATEST_STRIPE_VERSION = STRIPE_VERSIONS[-1]

CHOICES = {
    "stripe_api": STRIPE_VERSIONS,
    "product_ids": ("named", "generated"),
    "custom_fields": ("present", "absent"),
    "events": ("spine", "segment", "rudderstack", "snowplow"),
    "trials": ("yes", "no"),
    "coupons": ("yes", "no"),
}


@dataclass(frozen=True)
class Variant:
    stripe_api: str = LATEST_STRIPE_VERSION
    product_ids: str = "named"
    custom_fields: str = "present"
    events: str = "spine"
    trials: str = "yes"
    coupons: str = "yes"

    @property
    def has_custom_fields(self) -> bool:
        return self.custom_fields == "present"

    @property
    def has_trials(self) -> bool:
        return self.trials == "yes"

    @property
    def has_coupons(self) -> bool:
        return self.coupons == "yes"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        changed = [f"{k}={v}" for k, v in asdict(self).items() if v != getattr(Variant(), k)]
        return ",".join(changed) or "default"

    @classmethod
    def parse(cls, spec: str | None) -> Variant:
        """`default`, or comma-separated `name=value` settings (see the module doc)."""
        variant = cls()
        for part in (p.strip() for p in (spec or "").split(",")):
            if part in ("", "default"):
                continue
            name, sep, value = (s.strip() for s in part.partition("="))
            if not sep or name not in CHOICES:
                raise ValueError(
                    f"unknown variant setting {part!r}: use NAME=VALUE with NAME one of {', '.join(CHOICES)}"
                )
            if value not in CHOICES[name]:
                raise ValueError(f"variant {name} must be one of {', '.join(CHOICES[name])}, not {value!r}")
            variant = replace(variant, **{name: value})
        return variant

    @classmethod
    def from_manifest(cls, manifest: dict) -> Variant:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (manifest.get("variant") or {}).items() if k in known})
