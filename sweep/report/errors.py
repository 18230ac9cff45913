"""The error the report raises for input it cannot use."""


class ReportError(ValueError):
    """Raised for an unknown experiment or sweep, an unusable store, or an invalid baseline file."""
