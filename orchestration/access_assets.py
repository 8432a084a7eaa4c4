"""What each role may read, published after the entities are (privacy/access_policy.yml).

    audit/<every entity> ··· (after publish_<entity>, by priority) ··► role_access

Like the reports, it follows the audits rather than the serving assets: a held entity keeps
its last good version in `serving`, and the roles read that.
"""

import dagster as dg

from data_spine.settings import settings
from data_spine.warehouse import Warehouse
from expectations.suites import SUITES
from orchestration.quality_assets import audit_key
from orchestration.resources import WarehouseResource, exclusive_pool, waiting_for_the_warehouse
from privacy.access import publish_role_access
from privacy.access_policy import AccessPolicyError, ClassificationError


@dg.asset(
    key="role_access",
    deps=[audit_key(suite) for suite in SUITES.values()],
    group_name="access",
    kinds={Warehouse.of(settings()).target},
    pool=exclusive_pool("role_access"),
    op_tags={"dagster/priority": "-1"},
    description="Per role of privacy/access_policy.yml (sales, customer success, finance, data science, "
    "executive, AI agent): views `access_<role>` over serving, and a read-only DuckDB file "
    "(data/access/<role>.duckdb) holding exactly what the role may read: columns read, masked, pseudonymised "
    "or hidden, datasets whole or as aggregates, by their classification. On PostgreSQL the roles are the "
    "database's (`spine_<role>`: column grants on serving, the role's schema `access_<role>`). "
    "`spine sql --role <role>` reads as one.",
)
def role_access(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    target = warehouse.warehouse
    try:
        with waiting_for_the_warehouse(context):
            published = publish_role_access(target if target.is_postgres else warehouse.file, cfg.data_dir, cfg)
    except (AccessPolicyError, ClassificationError) as exc:
        # A policy or classification mistake: no role's file was changed; retrying cannot help.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    if target.is_postgres:
        roles = ", ".join(what["database_role"] for what in published.values())
        context.log.info(f"{len(published)} roles granted in PostgreSQL ({roles})")
    else:
        size = sum(what.get("bytes", 0) for what in published.values())
        context.log.info(
            f"{len(published)} roles published ({', '.join(published)}): {size / 1e6:,.1f} MB of role files"
        )
    return dg.MaterializeResult(metadata={role: dg.MetadataValue.json(what) for role, what in published.items()})
