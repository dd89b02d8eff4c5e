"""The one error type of the sweeper: input it cannot use, said in one sentence."""


class SweepError(ValueError):
    """A search space, storage, study or config that the sweep cannot use; the message is one
    sentence, printed as ``error: ...`` with exit status 1."""
