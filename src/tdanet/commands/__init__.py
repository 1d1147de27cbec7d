"""Subcommands of the ``tdanet`` CLI (see :mod:`tdanet.cli`)."""
