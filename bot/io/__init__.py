"""Contacts in, results out (docs/import_export.md). `contacts_import` (a CSV or XLSX file
checked row by row and applied in one transaction), `results_export` (CSV per flow and a FHIR
Bundle, streamed), `fhir` (the FHIR R4 resources), `console` (the /console/contacts/import and
/console/exports pages), `cli` (`carebridge contacts import`, `carebridge export`). Its store
module is bot/store/io.py.
"""
