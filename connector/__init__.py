"""The connector: everything that talks to Sage or knows its tables.

Properties, auth, transport, the product dialects and the catalog of virtual
tables live here; the CLI and the activity API are thin layers over it.
"""
