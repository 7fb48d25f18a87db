"""The API for other systems under /api/v1 (docs/api.md). `service` (bearer tokens with scopes,
the routes, the browsable docs page), `spec` (the OpenAPI 3.1 document), `console` (the
/console/tokens page), `cli` (`carebridge tokens ...`). Its store module is bot/store/api.py.
"""
