"""Incoming Jira and GitHub webhooks: verified, recorded, and turned into targeted runs.

`verify` proves a delivery came from whoever holds the integration's webhook secret,
`events` reads which items a verified delivery names, and `dispatch` starts one run
(trigger "webhook") per integration for the items that piled up once a burst is over.
The routes live in `etld.web.webhooks`.
"""

from __future__ import annotations
