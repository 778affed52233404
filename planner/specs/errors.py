"""The one exception type the planner raises for bad input; the CLI shows its message alone."""


class PlannerError(ValueError):
    """Bad input: the message says what was wrong and how to fix it."""


class NoClosedForm(PlannerError):
    """The planner has no closed form for this setup (a peft method or option it does not model);
    the message names what it lacks. gpuplan.profiler.answer answers such setups by simulation."""
