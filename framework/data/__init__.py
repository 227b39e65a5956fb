"""Rows and what makes them: the row format, dedupe, seeding and the sandboxed jinja2 templating."""
