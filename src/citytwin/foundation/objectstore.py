"""Inputs on object storage: ``s3://`` URLs for the Parquet and source files of the Dask workflows (issue 19).

A URL is listed on the client (:func:`list_parquet`: names and sizes only) and read by the process that
needs its bytes: a Dask worker reads its Parquet part with GeoPandas/pyarrow through the s3fs filesystem
(:func:`read_geoparquet`), or copies a source file into the staging folder for the ingest's pipelines
(:func:`fetch`). No data passes through the client.

Each process takes its credentials and endpoint from its own environment, under the names botocore
(and so s3fs) reads: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``),
``AWS_ENDPOINT_URL`` (an S3-compatible server: MinIO, Ceph, moto), ``AWS_DEFAULT_REGION``,
``AWS_MAX_ATTEMPTS``; ``CITYTWIN_STORAGE_OPTIONS`` may hold a JSON object of further s3fs options
(e.g. ``{"anon": true}``, ``{"client_kwargs": {"region_name": "cn-north-1"}}``). A local cluster's
workers inherit the command's environment; the workers of ``--dask tcp://…`` need it set where they run.

Only ``s3://`` is built (s3fs is the one object-store filesystem installed); other schemes are refused
with an :class:`~citytwin.foundation.errors.InputError`. Errors of the store (no such bucket, no
credentials, an endpoint that does not answer, access denied) are :class:`InputError` naming the URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError

if TYPE_CHECKING:
    import geopandas as gpd
    from s3fs import S3FileSystem

__all__ = ["ENV_OPTIONS", "fetch", "filesystem", "is_url", "list_objects", "list_parquet", "object_sizes", "read_geoparquet",
           "storage_errors", "storage_options"]

#: the environment variable of further s3fs options (a JSON object)
ENV_OPTIONS = "CITYTWIN_STORAGE_OPTIONS"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_GLOB = re.compile(r"[*?\[]")
#: bytes per read when an object is copied (:func:`fetch`)
FETCH_BLOCK = 8 << 20
_CREDENTIAL_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a server other "
                    f"than AWS) where the command and its workers run, or {ENV_OPTIONS}")


def is_url(path: str | Path) -> bool:
    """Whether ``path`` is a URL (``scheme://…``) rather than a local path.

    Examples
    --------
    >>> is_url("s3://bucket/parts/"), is_url("parts/part-0.parquet"), is_url(Path("/data/x.parquet"))
    (True, False, False)
    """
    return isinstance(path, str) and _URL.match(path) is not None


def storage_options() -> dict[str, Any]:
    """The s3fs options of :data:`ENV_OPTIONS` (``{}`` when unset).

    Raises
    ------
    InputError
        When the variable is not a JSON object (naming it).
    """
    raw = os.environ.get(ENV_OPTIONS, "").strip()
    if not raw:
        return {}
    try:
        opts = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", field=ENV_OPTIONS,
                         hint='a JSON object of s3fs options, e.g. {"anon": true}') from exc
    if not isinstance(opts, dict):
        raise InputError("must be a JSON object of s3fs options", field=ENV_OPTIONS)
    return opts


def filesystem(url: str) -> tuple[S3FileSystem, str]:
    """The s3fs filesystem for ``url`` (a fresh one: the environment read now) and the path within it.

    Raises
    ------
    InputError
        For a scheme other than ``s3://``, or bad :data:`ENV_OPTIONS`.
    """
    m = _URL.match(url)
    scheme = m.group(1).lower() if m else ""
    if scheme not in ("s3", "s3a"):
        raise InputError(f"{scheme or 'this'}:// URLs are not read: only s3:// (object storage through s3fs)",
                         file=url, hint="copy the files to s3:// storage or to a folder every worker mounts")
    from s3fs import S3FileSystem

    opts = storage_options()
    try:
        fs = S3FileSystem(skip_instance_cache=True, **opts)
    except TypeError as exc:
        raise InputError(f"an option s3fs does not take: {exc}", field=ENV_OPTIONS) from exc
    return fs, url[m.end():] if m else url


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "the AWS S3 endpoint"


@contextmanager
def storage_errors(url: str, what: str | None = None) -> Iterator[None]:
    """Errors of the object store inside the block become an :class:`InputError` naming ``url``.

    No credentials, an endpoint that does not answer, a bucket or object that does not exist, access
    denied; botocore's and aiohttp's errors are recognised by class name (no import of either here).
    """
    try:
        yield
    except InputError:
        raise
    except Exception as exc:
        names = {c.__name__ for c in type(exc).__mro__}
        if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
            raise InputError(f"no credentials for object storage ({exc})", file=url, field=what,
                             hint=_CREDENTIAL_HINT) from None
        if names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ClientConnectorError",
                    "ClientOSError", "ServerDisconnectedError"}:
            raise InputError(f"cannot reach the object store at {_endpoint()} ({exc})", file=url, field=what,
                             hint="check AWS_ENDPOINT_URL and that the server is up and reachable from here") from None
        if isinstance(exc, FileNotFoundError):
            bucket = "bucket" in str(exc).lower()
            raise InputError(f"{'no such bucket' if bucket else 'no such object or prefix'} ({exc})", file=url,
                             field=what) from None
        if isinstance(exc, PermissionError):
            raise InputError(f"access denied by the object store ({exc})", file=url, field=what,
                             hint=_CREDENTIAL_HINT) from None
        if isinstance(exc, OSError) or names & {"BotoCoreError", "ClientError"}:
            raise InputError(f"object storage error: {type(exc).__name__}: {exc}", file=url, field=what) from None
        raise


def list_objects(url: str, what: str | None = None) -> list[str]:
    """The objects ``url`` names, as URLs in name order (the listing only: no object is read).

    ``url`` is one object, a prefix (``s3://bucket/parts/``: the objects right under it, as a folder's
    files) or a glob (``s3://bucket/parts/*.parquet``).

    Raises
    ------
    InputError
        Naming ``url``: no such bucket, no credentials, an endpoint that does not answer, or no object.
    """
    fs, path = filesystem(url)
    scheme = url[:url.index("://")]
    with storage_errors(url, what):
        if _GLOB.search(path):
            matches = fs.glob(path, detail=True)
            found = [name for name, info in matches.items() if info.get("type") == "file"]
        else:
            if not path.endswith("/"):
                try:
                    info = fs.info(path)
                except FileNotFoundError:
                    info = {}
                if info.get("type") == "file":
                    return [f"{scheme}://{path}"]
            try:
                entries = fs.ls(path.rstrip("/"), detail=True)
            except FileNotFoundError:
                entries = []
            found = [e["name"] for e in entries if e.get("type") == "file"]
        if not found:
            bucket = path.split("/", 1)[0]
            if not fs.exists(bucket):
                raise InputError(f"no such bucket {bucket!r}", file=url, field=what,
                                 hint="check the URL, and AWS_ENDPOINT_URL for a server other than AWS")
            raise InputError("no object under this URL", file=url, field=what)
    return sorted(f"{scheme}://{p}" for p in found)


def list_parquet(url: str, what: str) -> list[str]:
    """The ``.parquet`` objects of ``url`` (:func:`list_objects`), as ``s3://`` URLs in name order.

    Raises
    ------
    InputError
        As :func:`list_objects`; also for one object that is not Parquet, or no Parquet under a prefix.
    """
    objects = list_objects(url, what)
    files = [f for f in objects if f.lower().endswith(".parquet")]
    if objects == [url] and not files:
        suffix = Path(url).suffix
        raise InputError(f"{what} on Dask is read by the workers from Parquet, not {suffix or 'this object'}",
                         file=url, hint="ingest it (`citytwin ingest … --dask`) and give the dataset, or write Parquet")
    if not files:
        raise InputError(f"no Parquet objects under {url!r}", file=url, field=what)
    return files


def object_sizes(urls: list[str]) -> list[int]:
    """The bytes of each object, from one listing per prefix (metadata only: no object is read).

    Raises
    ------
    InputError
        Naming the first URL that is no object (or no such bucket, no credentials, no endpoint).
    """
    if not urls:
        return []
    fs = filesystem(urls[0])[0]  # one filesystem for all (the same environment)
    paths = [filesystem(u)[1] for u in urls]  # (each scheme checked)
    known: dict[str, int] = {}
    for parent in sorted({p.rsplit("/", 1)[0] for p in paths if "/" in p}):
        with storage_errors(f"s3://{parent}/"), suppress(FileNotFoundError):  # missing: said per object below
            known.update({e["name"]: int(e.get("size") or 0) for e in fs.ls(parent, detail=True)
                          if e.get("type") == "file"})
    sizes: list[int] = []
    for url, path in zip(urls, paths, strict=True):
        if path in known:
            sizes.append(known[path])
            continue
        with storage_errors(url):
            try:
                info = fs.info(path)
            except FileNotFoundError:
                bucket = path.split("/", 1)[0]
                raise InputError("no such bucket" if not fs.exists(bucket) else "no such object", file=url,
                                 hint="check the URL, and AWS_ENDPOINT_URL for a server other than AWS") from None
        if info.get("type") != "file":
            raise InputError("is a prefix (a folder), not one object", file=url)
        sizes.append(int(info.get("size") or 0))
    return sizes


def read_geoparquet(url: str, columns: list[str] | None = None) -> gpd.GeoDataFrame:
    """One GeoParquet object read by this process (GeoPandas through s3fs); store errors name ``url``."""
    import geopandas as gpd

    fs, path = filesystem(url)
    with storage_errors(url):
        try:
            return gpd.read_parquet(path, columns=columns, filesystem=fs)
        except (ValueError, TypeError) as exc:  # not GeoParquet, no such column
            raise InputError(f"cannot read GeoParquet: {exc}", file=url) from exc


def fetch(url: str, dest: Path) -> str:
    """Copy object ``url`` to file ``dest`` (its folder made) in blocks of :data:`FETCH_BLOCK`; its SHA-256, hex.

    What the ingest's pipelines read on a worker: they open local paths (DuckDB, pyogrio).
    """
    fs, path = filesystem(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with storage_errors(url), fs.open(path, "rb", block_size=FETCH_BLOCK, cache_type="none") as src, \
            dest.open("wb") as out:
        for chunk in iter(lambda: src.read(FETCH_BLOCK), b""):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()
