"""The one exception type the planner raises for bad input; the CLI shows its message alone."""


class PlannerError(ValueError):
    """Bad input: the message says what was wrong and how to fix it."""
