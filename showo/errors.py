"""The one exception type users see: the CLIs turn it into a single line and exit status 2."""


class ShowoError(Exception):
    """A problem with what the user handed us (recipe, argument, file, tensor); the message names it."""
