"""Activities for integration tools: Query (source), Create, Update, Delete, Execute (targets),
and the change poller. A thin layer over the connector and the SQL engine (to come).
"""
