"""User-facing errors. The CLI prints ``ConfigError`` as one line on stderr and exits with code 2."""


class ConfigError(ValueError):
    """A bad user input: unknown name, impossible budget, malformed file, invalid option."""


class NFEBudgetError(ConfigError):
    """A solver cannot meet the requested NFE budget, or the counted NFE differs from the budget."""


# Seeds are stored as signed 64-bit integers (parquet, numpy int64) and seed torch generators: [0, 2^63 - 1].
MAX_SEED = 2**63 - 1


def check_int(value, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int in [lo, hi] (either bound optional), else a one-line ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{what} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{what} must be <= {hi}" + (" (2^63 - 1)" if hi == MAX_SEED else "") + f", got {value}")
    return value
