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

import math
import re
from typing import TYPE_CHECKING

from citytwin.foundation.errors import AccessDenied
from citytwin.foundation.roles import CLASSIFICATIONS, ROLES, Role, User, check_role  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import pandas as pd


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
#: Header names that say a column holds personal data. A header matches a hint when it *is* the hint,
#: or when its words (split at ``_``, ``-``, spaces, dots and case changes) end with the hint's words:
#: ``contact_phone`` and ``PhoneNumber`` match, ``hotel_count`` (which merely contains "tel") does not.
#: Chinese hints match a header that is or ends with them (``投诉人电话``; not ``电话亭数量``).
PII_NAME_HINTS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "联系人", "reporter_name", "contact_name", "person_name", "full_name", "resident_name"),
    "phone": ("phone", "phone_number", "电话", "手机", "手机号", "手机号码", "mobile", "mobile_number", "tel",
              "telephone", "联系电话", "contact_phone"),
    "id_number": ("身份证", "身份证号", "身份证号码", "id_number", "idcard", "id_card", "identity_number", "证件号",
                  "证件号码"),
    "email": ("email", "e_mail", "邮箱", "电子邮箱", "mail"),
}
# detectors of personal data inside text (RE2-compatible: DuckDB runs the same patterns at commit)
#: A Chinese mobile number (11 digits from 13x–19x; optional +86 and separators), not inside a longer number.
MOBILE_CN = r"(?:\+?86[ -]?)?1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4}"
#: A candidate 18-digit resident ID (its checksum is verified by :func:`valid_resident_id`).
RESIDENT_ID = r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
#: An e-mail address.
EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_DETECTORS: dict[str, re.Pattern[str]] = {
    "phone": re.compile(rf"(?<![0-9]){MOBILE_CN}(?![0-9])"),
    "id_number": re.compile(rf"(?<![0-9]){RESIDENT_ID}(?![0-9Xx])"),
    "email": re.compile(EMAIL),
}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def valid_resident_id(s: str) -> bool:
    """Whether ``s`` is an 18-digit resident ID number with a valid GB 11643 checksum.

    Examples
    --------
    >>> valid_resident_id("11010519491231002X"), valid_resident_id("110105194912310021")
    (True, False)
    """
    if len(s) != 18 or not s[:17].isdigit() or not (s[17].isdigit() or s[17] in "Xx"):
        return False
    total = sum(int(d) * w for d, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == s[17].upper()


def find_personal(text: str) -> list[tuple[str, int, int]]:
    """Personal data inside a text: ``(kind, start, end)`` of each mobile number, resident ID and e-mail.

    Resident IDs count only with a valid checksum; overlapping matches keep the first found.

    Examples
    --------
    >>> t = "王先生 13812345678 反映, 身份证11010519491231002X, 邮件 wang@example.cn"
    >>> [(k, t[a:b]) for k, a, b in find_personal(t)]
    [('phone', '13812345678'), ('id_number', '11010519491231002X'), ('email', 'wang@example.cn')]
    """
    found: list[tuple[str, int, int]] = []
    for kind in ("id_number", "phone", "email"):
        for m in _DETECTORS[kind].finditer(text):
            if kind == "id_number" and not valid_resident_id(m.group()):
                continue
            if any(a < m.end() and m.start() < b for _k, a, b in found):
                continue
            found.append((kind, m.start(), m.end()))
    return sorted(found, key=lambda x: x[1])


def _words(header: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", header)
    return [w for w in re.split(r"[\s_\-.()/]+", spaced.lower()) if w]


def pii_from_header(header: str) -> str | None:
    """The personal-data kind a column header names, if any (see :data:`PII_NAME_HINTS`).

    Examples
    --------
    >>> [pii_from_header(h) for h in ("contact_phone", "PhoneNumber", "hotel_count", "投诉人电话", "电话亭数量")]
    ['phone', 'phone', None, 'phone', None]
    """
    words = _words(header)
    compact = header.strip().lower()
    for kind, hints in PII_NAME_HINTS.items():
        for h in hints:
            if h.isascii():
                hw = _words(h)
                if words and words[-len(hw):] == hw:
                    return kind
            elif compact == h or compact.endswith(h):
                return kind
    return None


def detect_pii(columns: list[str], declared: dict[str, str] | None = None) -> dict[str, str]:
    """Personal-data columns: those the schema or the catalog marks, plus those whose header names
    personal data (:func:`pii_from_header`; whole words, not substrings)."""
    out = dict(declared or {})
    for c in columns:
        if c in out:
            continue
        kind = pii_from_header(c)
        if kind:
            out[c] = kind
    return out


def mask_text(value: str) -> str:
    """``value`` with every mobile number, resident ID and e-mail in it masked (the rest kept).

    Examples
    --------
    >>> mask_text("请联系 13812345678 或 wang@example.cn")
    '请联系 138****5678 或 w***@example.cn'
    """
    parts: list[str] = []
    pos = 0
    for kind, a, b in find_personal(value):
        parts.append(value[pos:a])
        parts.append(str(_mask_one(value[a:b], kind)))
        pos = b
    parts.append(value[pos:])
    return "".join(parts)


def _mask_one(value: object, kind: str) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return value
    s = str(value)
    if kind == "phone":
        digits = re.sub(r"\D", "", s)
        if len(digits) == 13 and digits.startswith("86"):
            digits = digits[2:]  # +86 country code
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
    if kind == "text":
        return mask_text(s)
    return "***"


def mask_frame(df: pd.DataFrame, pii: dict[str, str]) -> pd.DataFrame:
    """Return a copy of ``df`` with personal-data columns masked.

    Examples
    --------
    >>> import pandas as pd
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
