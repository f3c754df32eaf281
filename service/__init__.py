"""sagesql serve: the multi-tenant instances service integration platforms run.

A layer above the activities and below the CLI. ``storage`` keeps organizations,
users, instances (bodies encrypted) and tokens (encrypted) behind one interface;
``instances`` reads a platform body with the polling library, every problem listed;
``polling`` runs every instance's poll session on a worker pool; ``operations`` is
what each endpoint does for one organization; ``http`` (Starlette), ``openapi`` and
``page`` are the web side; ``server`` starts it all (uvicorn) and stops it cleanly.
"""
