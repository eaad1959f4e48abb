"""MQTT accounts of a workspace: per-device credentials, topic ACLs, Mosquitto password and ACL files.

The broker's own access control (Mosquitto 2: ``password_file``, ``acl_file``,
``allow_anonymous false``, ``use_username_as_clientid true``) is generated from the workspace:

=========== ============================================ ===================================================
kind        account                                      may
=========== ============================================ ===================================================
device      one per entity (``dev-{type}-{localId}``)     publish to its own topic ``{prefix}/{type}/{localId}/attrs``
ingest      the twin's ingest (``citytwin-ingest``)       subscribe to ``{prefix}/#``
alerts      the alert publisher (``citytwin-ingest-alerts``) publish to ``{prefix}/alerts/#``
publisher   a gateway or replay (``citytwin-replay``)     publish to every entity topic and ``{prefix}/batch``
monitor     ``citytwin doctor`` (``citytwin-monitor``)     read the broker's statistics ``$SYS/broker/#`` (counts,
                                                          no readings)
user        a workspace user                              subscribe to ``{prefix}/#`` if the user's role is
                                                          cleared for the twin's classification, else nothing
=========== ============================================ ===================================================

Passwords are generated with :mod:`secrets` and shown once; the catalog (table ``mqtt_accounts``
of the workspace's ``catalog.sqlite``) keeps only their hash in Mosquitto's own format
(PBKDF2-SHA512, ``$7$ITERATIONS$SALT$HASH`` as ``mosquitto_passwd`` writes it), so the password
file is just the catalog's hashes. Revoked accounts and accounts without issued credentials are
left out of the password file (the broker refuses them). Every issue and revocation is audited.

Pure file writing: nothing here talks to a broker (``scripts/mosquitto.sh reload DIR`` makes a
running broker re-read the files).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citytwin.foundation.access import readers_of
from citytwin.foundation.catalog import Catalog, now
from citytwin.foundation.errors import InputError, NotFoundError

KINDS = ("device", "ingest", "alerts", "publisher", "monitor", "user")
#: default names of the service accounts (the runtime's alert publisher is ``{ingest}-alerts``)
DEFAULT_SERVICE_NAMES = {"ingest": "citytwin-ingest", "alerts": "citytwin-ingest-alerts",
                         "publisher": "citytwin-replay", "monitor": "citytwin-monitor"}
#: iterations and salt length ``mosquitto_passwd`` (2.0) uses
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
NGSI_PREFIX = "urn:ngsi-ld:"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TOPIC_PART = re.compile(r"^[A-Za-z0-9._~-]{1,200}$")

_DDL = """
CREATE TABLE IF NOT EXISTS mqtt_accounts (
    username TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    entity TEXT,
    hash TEXT,
    created TEXT NOT NULL,
    issued TEXT,
    revoked INTEGER NOT NULL DEFAULT 0,
    revoked_at TEXT
);
"""


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2's password hash: ``$7$ITERATIONS$base64(salt)$base64(PBKDF2-SHA512)``.

    Examples
    --------
    >>> h = hash_password("secret", salt=bytes(12))
    >>> h[:24]
    '$7$101$AAAAAAAAAAAAAAAA$'
    >>> verify_password("secret", h), verify_password("Secret", h)
    (True, False)
    """
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    dk = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as written by :func:`hash_password` or mosquitto_passwd)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7":
        raise InputError(f"not a Mosquitto $7$ password hash: {encoded[:12]!r}…", field="hash")
    salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
    return hmac.compare_digest(got, want)


def check_username(name: str) -> str:
    """An MQTT account name that is safe in the password and ACL files (letters, digits, ``.``, ``_``, ``-``)."""
    if not isinstance(name, str) or not _USERNAME.match(name):
        raise InputError(f"invalid MQTT account name {name!r}", field="username",
                         hint="use letters, digits, '.', '_' and '-' (max 128), starting with a letter or digit")
    return name


def split_entity(entity: str) -> tuple[str, str]:
    """``urn:ngsi-ld:{type}:{localId}`` -> (type, localId), both checked safe as topic levels.

    A type or id holding MQTT wildcards (``+``, ``#``), ``/``, spaces or control characters is refused:
    it would widen the ACL or break the files.
    """
    if not entity.startswith(NGSI_PREFIX):
        raise InputError(f"entity id {entity!r} is not an NGSI-LD URN", field="entity",
                         hint="use urn:ngsi-ld:{type}:{localId}")
    type_, _, local = entity[len(NGSI_PREFIX):].partition(":")
    for what, part in (("type", type_), ("local id", local)):
        if not _TOPIC_PART.match(part):
            raise InputError(f"entity {entity!r}: its {what} {part!r} cannot name an MQTT topic level safely",
                             field="entity", hint="letters, digits, '.', '_', '~' and '-' only")
    return type_, local


def device_username(entity: str) -> str:
    """The account of the device that publishes an entity's readings.

    Examples
    --------
    >>> device_username("urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi")
    'dev-AirQualityObserved-Beijing-Dongsi'
    """
    type_, local = split_entity(entity)
    return check_username(f"dev-{type_}-{local}")


@dataclass(frozen=True)
class MqttAccount:
    """One MQTT account (never its password; ``has_password`` says whether credentials were issued)."""

    username: str
    kind: str
    entity: str | None
    created: str
    issued: str | None
    revoked: bool
    revoked_at: str | None
    has_password: bool

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "kind": self.kind, "entity": self.entity, "created": self.created,
                "issued": self.issued, "revoked": self.revoked, "revoked_at": self.revoked_at,
                "has_password": self.has_password}


class MqttAccounts:
    """The MQTT accounts of a workspace, kept in its catalog (table ``mqtt_accounts``).

    Parameters
    ----------
    catalog
        The workspace catalog (accounts and audit rows go there).
    actor, actor_role
        Who makes the changes (recorded in the audit log).

    Examples
    --------
    >>> import tempfile
    >>> cat = Catalog(Path(tempfile.mkdtemp()) / "catalog.sqlite")
    >>> accts = MqttAccounts(cat)
    >>> accts.add_device("urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi").username
    'dev-AirQualityObserved-Beijing-Dongsi'
    >>> user, pw = accts.issue("dev-AirQualityObserved-Beijing-Dongsi")
    >>> accts.check(user, pw), accts.check(user, "guess")
    (True, False)
    """

    def __init__(self, catalog: Catalog, *, actor: str | None = None, actor_role: str | None = None) -> None:
        self.catalog = catalog
        self.actor, self.actor_role = actor, actor_role
        with catalog.connect() as con:
            con.executescript(_DDL)

    def _audit(self, action: str, detail: dict[str, Any], outcome: str = "ok") -> None:
        self.catalog.audit(user=self.actor, role=self.actor_role, action=action, dataset="twin", outcome=outcome,
                           detail=json.dumps(detail, ensure_ascii=False, sort_keys=True))

    # -- accounts ----------------------------------------------------------------------------
    def _add(self, username: str, kind: str, entity: str | None) -> MqttAccount:
        check_username(username)
        if kind not in KINDS:
            raise InputError(f"unknown MQTT account kind {kind!r}", field="kind", hint=f"use one of {', '.join(KINDS)}")
        with self.catalog.connect() as con:
            row = con.execute("SELECT kind, entity FROM mqtt_accounts WHERE username=?", (username,)).fetchone()
            if row is not None and (row["kind"], row["entity"]) != (kind, entity):
                raise InputError(f"MQTT account {username!r} exists as a {row['kind']} account"
                                 + (f" of {row['entity']}" if row["entity"] else ""), field="username")
            if row is None:
                con.execute("INSERT INTO mqtt_accounts(username, kind, entity, created) VALUES (?,?,?,?)",
                            (username, kind, entity, now()))
                self._audit("mqtt.account.add", {"username": username, "kind": kind, "entity": entity})
        return self.get(username)

    def add_device(self, entity: str) -> MqttAccount:
        """The account of the device publishing ``entity``'s readings (created if new; no password yet)."""
        return self._add(device_username(entity), "device", entity)

    def add_service(self, kind: str, username: str | None = None) -> MqttAccount:
        """A service account: ``ingest``, ``alerts``, ``publisher`` or ``monitor`` (default names in
        DEFAULT_SERVICE_NAMES)."""
        if kind not in DEFAULT_SERVICE_NAMES:
            raise InputError(f"{kind!r} is not a service account kind", field="kind",
                             hint=f"use one of {', '.join(DEFAULT_SERVICE_NAMES)}")
        return self._add(username or DEFAULT_SERVICE_NAMES[kind], kind, None)

    def add_user(self, name: str) -> MqttAccount:
        """An account for a workspace user; what it may read follows the user's role (see the module doc)."""
        if self.catalog.get_user(name) is None:
            raise NotFoundError(f"user {name!r} is not registered in this workspace",
                                hint="an admin adds users with `citytwin user add NAME --role ROLE`")
        return self._add(name, "user", None)

    def get(self, username: str) -> MqttAccount:
        with self.catalog.connect() as con:
            r = con.execute("SELECT * FROM mqtt_accounts WHERE username=?", (username,)).fetchone()
        if r is None:
            raise NotFoundError(f"no MQTT account {username!r}", hint="`citytwin twin devices list` lists them")
        return _account(r)

    def find(self, name: str) -> MqttAccount:
        """An account by username, or the device account of an entity (URN, ``{type}:{localId}``, local id)."""
        accounts = self.list()
        rows = [a for a in accounts if name in (a.username, a.entity)]
        if not rows:
            hits = set(entities_matching(name, [a.entity for a in accounts if a.kind == "device" and a.entity]))
            rows = [a for a in accounts if a.kind == "device" and a.entity in hits]
        if not rows:
            raise NotFoundError(f"no MQTT account or device for {name!r}",
                                hint="`citytwin twin devices add STATION` creates one; `... list` lists them")
        if len(rows) > 1:
            raise InputError(f"{name!r} names several devices: {', '.join(a.username for a in rows)}",
                             field="station", hint="give the entity's full URN")
        return rows[0]

    def list(self) -> list[MqttAccount]:
        with self.catalog.connect() as con:
            return [_account(r) for r in con.execute("SELECT * FROM mqtt_accounts ORDER BY kind, username")]

    # -- credentials ---------------------------------------------------------------------------
    def issue(self, username: str) -> tuple[str, str]:
        """New credentials for an account: ``(username, password)``; the old password stops working.

        The password (32 random bytes, URL-safe base64) is returned only here; the catalog keeps
        its ``$7$`` hash. A revoked account is reinstated.
        """
        acct = self.get(username)
        password = secrets.token_urlsafe(32)
        with self.catalog.connect() as con:
            con.execute("UPDATE mqtt_accounts SET hash=?, issued=?, revoked=0, revoked_at=NULL WHERE username=?",
                        (hash_password(password), now(), username))
        self._audit("mqtt.credentials.issue", {"username": username, "kind": acct.kind, "entity": acct.entity})
        return username, password

    def revoke(self, username: str) -> MqttAccount:
        """Revoke an account's credentials (it leaves the password file; revoking twice is harmless)."""
        acct = self.get(username)
        with self.catalog.connect() as con:
            con.execute("UPDATE mqtt_accounts SET hash=NULL, revoked=1, revoked_at=COALESCE(revoked_at, ?)"
                        " WHERE username=?", (now(), username))
        self._audit("mqtt.credentials.revoke", {"username": username, "kind": acct.kind, "entity": acct.entity})
        return self.get(username)

    def check(self, username: str, password: str) -> bool:
        """Whether the credentials are valid (what the broker decides from the password file)."""
        with self.catalog.connect() as con:
            r = con.execute("SELECT hash FROM mqtt_accounts WHERE username=? AND revoked=0", (username,)).fetchone()
        return bool(r and r["hash"]) and verify_password(password, r["hash"])

    # -- broker files --------------------------------------------------------------------------
    def password_file(self) -> str:
        """Mosquitto ``password_file`` text: ``username:$7$…`` for every active account with credentials."""
        with self.catalog.connect() as con:
            rows = con.execute("SELECT username, hash FROM mqtt_accounts WHERE revoked=0 AND hash IS NOT NULL"
                               " ORDER BY username").fetchall()
        return "".join(f"{r['username']}:{r['hash']}\n" for r in rows)

    def acl_file(self, *, prefix: str = "citytwin", twin_classification: str = "internal") -> str:
        """Mosquitto ``acl_file`` text: each active account's topics (everything else is denied)."""
        if not _TOPIC_PART.match(prefix):
            raise InputError(f"invalid topic prefix {prefix!r}", field="prefix")
        cleared = set(readers_of(twin_classification))
        roles = {u["name"]: u["role"] for u in self.catalog.users()}
        out = ["# generated by citytwin (citytwin twin devices broker-files); do not edit",
               "# accounts not listed here may do nothing"]
        for a in self.list():
            if a.revoked or not a.has_password:
                continue
            rules = acl_rules(a.kind, a.entity, prefix=prefix,
                              cleared=a.kind == "user" and roles.get(a.username) in cleared)
            out.append("")
            out.append(f"user {a.username}")
            out.extend(rules or ["# no topics"])
        return "\n".join(out) + "\n"

    def write_broker_files(self, out_dir: str | Path, *, prefix: str = "citytwin",
                           twin_classification: str = "internal") -> tuple[Path, Path]:
        """Write ``passwd`` and ``acl`` (mode 600) into ``out_dir``; returns their paths.

        Each file is written to a temporary name and renamed, so a broker reloading it never
        sees half a file.
        """
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        paths = d / "passwd", d / "acl"
        for path, text in zip(paths, (self.password_file(),
                                      self.acl_file(prefix=prefix, twin_classification=twin_classification)),
                              strict=True):
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        self._audit("mqtt.broker_files.write", {"dir": str(d.resolve()), "prefix": prefix,
                                                "accounts": self.password_file().count("\n")})
        return paths


def acl_rules(kind: str, entity: str | None, *, prefix: str = "citytwin", cleared: bool = False) -> list[str]:
    """The ACL lines of one account.

    Examples
    --------
    >>> acl_rules("device", "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi")
    ['topic write citytwin/AirQualityObserved/Beijing-Dongsi/attrs']
    >>> acl_rules("ingest", None)
    ['topic read citytwin/#']
    """
    if kind == "device":
        if entity is None:
            raise InputError("a device account needs its entity", field="entity")
        type_, local = split_entity(entity)
        return [f"topic write {prefix}/{type_}/{local}/attrs"]
    if kind == "ingest":
        return [f"topic read {prefix}/#"]
    if kind == "alerts":
        return [f"topic write {prefix}/alerts/#"]
    if kind == "publisher":
        return [f"topic write {prefix}/+/+/attrs", f"topic write {prefix}/batch"]
    if kind == "monitor":
        return ["topic read $SYS/broker/#"]
    if kind == "user":
        return [f"topic read {prefix}/#"] if cleared else []
    raise InputError(f"unknown MQTT account kind {kind!r}", field="kind")


def _account(r: Any) -> MqttAccount:
    return MqttAccount(r["username"], r["kind"], r["entity"], r["created"], r["issued"], bool(r["revoked"]),
                       r["revoked_at"], r["hash"] is not None)


def entities_matching(station: str, known: Iterable[str], *, type_: str | None = None) -> list[str]:
    """Registered entity ids a STATION argument names: its URN, ``{type}:{localId}``, or a local id.

    A local id also matches a registered ``…:{prefix}-{localId}`` (e.g. ``Dongsi`` names
    ``urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi``) when nothing matches exactly.
    """
    known = list(known)
    if station.startswith(NGSI_PREFIX):
        return [station] if station in known else []
    hits = []
    for e in known:
        t, _, local = e[len(NGSI_PREFIX):].partition(":")
        if (type_ is None or t == type_) and (local == station or f"{t}:{local}" == station):
            hits.append(e)
    if hits:
        return hits
    return [e for e in known if (type_ is None or e[len(NGSI_PREFIX):].partition(":")[0] == type_)
            and e.endswith(f"-{station}")]


__all__ = ["DEFAULT_SERVICE_NAMES", "KINDS", "MqttAccount", "MqttAccounts", "acl_rules",
           "check_username", "device_username", "entities_matching", "hash_password", "split_entity",
           "verify_password"]
