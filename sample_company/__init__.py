"""A deterministic B2B SaaS company: its CRM, billing, support and product-usage systems.

`generate()` writes the state of each system under `data/sources/` (served over HTTP by
`sample_company.vendor_api` in each vendor's own wire format) and drops usage-event files
into the landing folder the way an event collector would.
"""

from sample_company.generate import generate
from sample_company.presets import PRESETS, Preset

__all__ = ["generate", "PRESETS", "Preset"]
