"""Errors raised by citytwin, each saying what went wrong and where."""

from __future__ import annotations


class CitytwinError(Exception):
    """Base class of every error citytwin raises on purpose.

    Parameters
    ----------
    message
        What went wrong, in words a user understands.
    hint
        What the user can do about it (optional).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class InputError(CitytwinError):
    """A file, record or argument cannot be read or is not valid.

    Names the file, row (1-based data row, header excluded) and field where known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = []
        if file:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if field:
            where.append(f"field {field!r}")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full, hint=hint)
        self.file = file
        self.row = row
        self.field = field


class NotFoundError(CitytwinError):
    """A dataset, version, schema, user or workspace does not exist."""


class AccessDenied(CitytwinError):
    """The user's role does not allow the action on the dataset."""
