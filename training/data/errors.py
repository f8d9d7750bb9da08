"""The one error type of the data layer."""


class DataError(ValueError):
    """Bad data input; the message is one line meant for the user."""
