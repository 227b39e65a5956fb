"""Rows and what makes them: the row format, dedupe, seeding, allocation of rows to parts and the sandboxed
jinja2 templating."""
