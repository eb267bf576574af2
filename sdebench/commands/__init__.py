"""Subcommands of the ``sdebench`` CLI (see ``sdebench.cli.COMMANDS``)."""
