"""Errors for bad input; each message names the bad value and the valid choices."""


class VrbenchError(ValueError):
    """Base class for user-facing errors (the CLI turns them into exit code 2)."""


class UnknownNameError(VrbenchError):
    """A name that no registry holds."""

    def __init__(self, kind: str, name: str, valid: list[str], suggestion: str | None) -> None:
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(sorted(valid)) or '(none)'}."
        )
        self.name = name
        self.valid = valid
        self.suggestion = suggestion


class ParameterError(VrbenchError):
    """A component parameter that does not exist, does not parse, or is out of range."""
