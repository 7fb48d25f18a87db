"""Broadcasts: coordinators' health advice to everyone who agreed to receive it
(docs/broadcasts.md). `service` (the `Broadcasts` service the CLI, console and API call),
`view` (what the console pages show, as plain data), `console` (the /console/broadcasts pages),
`cli` (`carebridge broadcast ...`). Its store module is bot/store/broadcasts.py.
"""
