"""Roles and classifications: the vocabulary of access control (A5), with no imports of its own.

:mod:`citytwin.foundation.catalog` records users and classifications with it and
:mod:`citytwin.foundation.access` decides with it; both import it, neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from citytwin.foundation.errors import InputError

__all__ = ["CLASSIFICATIONS", "ROLES", "Role", "User", "check_role"]

#: Dataset classifications, from the least to the most restricted.
CLASSIFICATIONS = ("public", "internal", "sensitive")


@dataclass(frozen=True)
class Role:
    name: str
    clearance: str
    sees_personal_data: bool
    can_write: bool
    can_admin: bool = False


ROLES: dict[str, Role] = {
    "admin": Role("admin", "sensitive", True, True, True),
    "steward": Role("steward", "sensitive", True, True),
    "analyst": Role("analyst", "internal", False, True),
    "integrator": Role("integrator", "internal", False, True),
    "viewer": Role("viewer", "internal", False, False),
    "public": Role("public", "public", False, False),
}


@dataclass(frozen=True)
class User:
    name: str
    role: str
    department: str | None = None

    @property
    def r(self) -> Role:
        return ROLES[self.role]


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
    return role


