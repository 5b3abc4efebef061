from __future__ import annotations


class RequestRejected(ValueError):
    """A request that cannot be carried out as asked; the message is for the person who asked.

    Pages show it as a form error, the API as a 400 in the usual error shape.
    """
