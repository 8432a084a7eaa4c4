"""Local stand-ins for the Stripe, HubSpot and Zendesk APIs, serving the sample company.

They follow each vendor's auth, pagination and object conventions so that the connectors in
`connectors/` are the production connectors: only base URL and credentials differ.
"""

from sample_company.vendor_api.server import DEMO_CREDENTIALS, VendorApiServer

__all__ = ["DEMO_CREDENTIALS", "VendorApiServer"]
