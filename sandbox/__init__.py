"""The sandbox: a local emulator of the Sage Accounting, Sage 200 and Sage CRM APIs.

Each product is a werkzeug application over one SQLite store of demo data, with its
own OAuth server (or basic auth for CRM), rate limit, fault injection and a
controllable clock. ``sagesql sandbox serve`` runs it; ``sagesql query --sandbox``
and the tests start it in-process on a free loopback port.
"""
