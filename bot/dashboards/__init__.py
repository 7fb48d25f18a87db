"""The console dashboards (docs/console.md, Dashboards): triage outcomes, red flags, tickets
against their deadlines, check-in adherence, broadcast reach. `service` (the numbers, each chart
a `Table`), `view` (a `Table` drawn as inline-SVG geometry), `console` (the /console/dashboards
pages and CSVs). No CLI. Its store module is bot/store/dashboards.py.
"""
