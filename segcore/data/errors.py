"""The one exception type that every data problem raises."""


class DataError(ValueError):
    """Raised for invalid input data: the message names the file or value and the fix."""


def format_stems(stems: list[str], limit: int = 10) -> str:
    """Join up to ``limit`` stems for an error message, with a count of the rest."""
    shown = ", ".join(stems[:limit])
    if len(stems) > limit:
        shown += f" and {len(stems) - limit} more"
    return shown
