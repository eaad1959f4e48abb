"""Access control (A5): users and roles, dataset classification, masking of personal data.

Every read and write through :class:`~citytwin.foundation.workspace.Workspace` is checked
here and written to the audit log, whether it is allowed or denied.

Roles
-----
============  =====================  ================  ======
role          highest classification personal data     writes
============  =====================  ================  ======
admin         sensitive              clear             yes (and users)
steward       sensitive              clear             yes
analyst       internal (*)           masked            yes
integrator    internal               masked            yes
viewer        internal               masked            no
public        public                 masked            no
============  =====================  ================  ======

(*) an analyst may read the sensitive datasets of their own department, still masked.

The live twin's HTTP API (:mod:`citytwin.service.auth`) applies the same read rule to the
twin's classification (workspace setting ``twin_classification``, default ``internal``);
its writes (observations, entities, alerts, forecasts) need a role in :data:`LIVE_WRITERS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from citytwin.foundation.catalog import CLASSIFICATIONS
from citytwin.foundation.errors import AccessDenied, InputError


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


def _level(classification: str) -> int:
    return CLASSIFICATIONS.index(classification)


def can_read(user: User, classification: str, department: str | None) -> bool:
    """Whether ``user`` may read a dataset of this classification owned by ``department``."""
    if _level(classification) <= _level(user.r.clearance):
        return True
    return (user.role == "analyst" and classification == "sensitive" and department is not None
            and user.department == department)


def readers_of(classification: str) -> list[str]:
    """Roles cleared to read data of this classification (analysts' own-department rule aside).

    Examples
    --------
    >>> readers_of("public"), readers_of("sensitive")
    (['admin', 'steward', 'analyst', 'integrator', 'viewer', 'public'], ['admin', 'steward'])
    """
    return [r.name for r in ROLES.values() if _level(classification) <= _level(r.clearance)]


def require_read(user: User, name: str, classification: str, department: str | None) -> None:
    if not can_read(user, classification, department):
        raise AccessDenied(
            f"user {user.name!r} (role {user.role}) may not read {classification} dataset {name!r}"
            f" (needs role {' or '.join(readers_of(classification))})",
            hint="ask a data steward for a role with clearance",
        )


#: Roles that may write to the live twin (observations, entities, alerts, forecasts) over its API.
LIVE_WRITERS: tuple[str, ...] = ("integrator", "steward", "admin")


def can_write_live(user: User) -> bool:
    """Whether ``user`` may write to the live twin: a role in :data:`LIVE_WRITERS`.

    Examples
    --------
    >>> can_write_live(User("gw", "integrator")), can_write_live(User("ana", "analyst"))
    (True, False)
    """
    return user.role in LIVE_WRITERS


def require_live_write(user: User, name: str = "twin") -> None:
    if not can_write_live(user):
        raise AccessDenied(f"user {user.name!r} (role {user.role}) may not write to the live {name}"
                           f" (needs role {' or '.join(LIVE_WRITERS)})",
                           hint="ask an admin for an integrator token")


def require_write(user: User, name: str) -> None:
    if not user.r.can_write:
        raise AccessDenied(f"user {user.name!r} (role {user.role}) may not write dataset {name!r}")


def require_admin(user: User) -> None:
    if not user.r.can_admin:
        raise AccessDenied(f"user {user.name!r} (role {user.role}) may not manage users")


# ---------------------------------------------------------------------------
# personal data
# ---------------------------------------------------------------------------
PII_NAME_HINTS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "联系人", "reporter_name", "contact_name", "person_name", "full_name", "resident_name"),
    "phone": ("phone", "电话", "手机", "mobile", "tel", "联系电话", "contact_phone"),
    "id_number": ("身份证", "id_number", "idcard", "id_card", "identity_number", "证件号"),
    "email": ("email", "e-mail", "邮箱", "mail"),
}
_PHONE = re.compile(r"^\+?[\d\s\-()]{7,20}$")
_ID18 = re.compile(r"^\d{17}[\dXx]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def detect_pii(columns: list[str], declared: dict[str, str] | None = None) -> dict[str, str]:
    """Personal-data columns: those declared by the schema plus those whose header says so."""
    out = dict(declared or {})
    for c in columns:
        if c in out:
            continue
        lc = c.lower()
        for kind, hints in PII_NAME_HINTS.items():
            if any(h in lc for h in hints):
                out[c] = kind
                break
    return out


def _mask_one(value: object, kind: str) -> object:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return value
    s = str(value)
    if kind == "phone":
        digits = re.sub(r"\D", "", s)
        if len(digits) >= 7:
            return digits[:3] + "*" * (len(digits) - 7) + digits[-4:] if len(digits) > 7 else "***" + digits[-4:]
        return "*" * len(s)
    if kind == "id_number":
        return s[:6] + "*" * max(len(s) - 10, 0) + s[-4:] if len(s) > 10 else "*" * len(s)
    if kind == "email":
        local, _, domain = s.partition("@")
        return (local[:1] + "***@" + domain) if domain else "***"
    if kind == "name":
        return s[:1] + "*" * max(len(s) - 1, 1)
    if kind == "address":
        # keep the street / area part, drop the house number
        return re.sub(r"\d+", "#", s)
    return "***"


def mask_frame(df: pd.DataFrame, pii: dict[str, str]) -> pd.DataFrame:
    """Return a copy of ``df`` with personal-data columns masked.

    Examples
    --------
    >>> df = pd.DataFrame({"phone": ["13812345678"], "name": ["张三丰"]})
    >>> mask_frame(df, {"phone": "phone", "name": "name"}).iloc[0].tolist()
    ['138****5678', '张**']
    """
    if not pii:
        return df
    out = df.copy()
    for col, kind in pii.items():
        if col in out.columns:
            out[col] = out[col].map(lambda v, k=kind: _mask_one(v, k)).astype(object)
    return out
