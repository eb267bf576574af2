"""User-facing errors. The CLI prints ``ConfigError`` as one line on stderr and exits with code 2."""


class ConfigError(ValueError):
    """A bad user input: unknown name, impossible budget, malformed file, invalid option."""


class NFEBudgetError(ConfigError):
    """A solver cannot meet the requested NFE budget, or the counted NFE differs from the budget."""
