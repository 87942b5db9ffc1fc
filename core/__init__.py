"""Huiliu core: settings, MongoDB, event bus, auth and roles, audit, errors, the web layer and the CLI."""
