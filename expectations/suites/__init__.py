"""Every entity's suite, by entity name, in the order the scorecard shows them."""

from expectations.suite import Suite
from expectations.suites import contact, customer, invoice, revenue, ticket, usage_event

SUITES: dict[str, Suite] = {
    s.entity: s for s in (customer.SUITE, contact.SUITE, revenue.SUITE, invoice.SUITE, ticket.SUITE, usage_event.SUITE)
}


def get_suite(entity: str) -> Suite:
    try:
        return SUITES[entity]
    except KeyError:
        raise ValueError(f"no suite for entity {entity!r}; known: {', '.join(SUITES)}") from None
