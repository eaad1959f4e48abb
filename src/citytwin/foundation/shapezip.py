"""Checks of a zipped Shapefile before GDAL reads it (issue 12): zip slip, missing parts, empty ``.shp``."""

from __future__ import annotations

import zipfile
from pathlib import Path

from citytwin.foundation.errors import InputError

__all__ = ["check_shapefile_zip"]


def check_shapefile_zip(path: Path) -> None:
    """Refuse a zipped Shapefile that cannot be read whole, before GDAL sees it.

    Entries that would land outside a folder they were extracted to (``../x``, ``/etc/x``: a
    "zip slip"; nothing is ever extracted, GDAL reads through ``/vsizip``), a ``.shp`` without its
    ``.dbf`` or ``.shx``, and an empty or zero-filled ``.shp`` are clear errors.

    Raises
    ------
    InputError
        Naming the archive and the entry.
    """
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            for info in infos:
                name = info.filename.replace("\\", "/")
                if name.startswith("/") or ".." in name.split("/") or (len(name) > 1 and name[1] == ":"):
                    raise InputError(f"zip entry {info.filename!r} points outside the archive's folder "
                                     "(zip slip); refused", file=str(path),
                                     hint="re-create the archive with plain relative names")
            shps = [i for i in infos if i.filename.lower().endswith(".shp")]
            names = {i.filename.lower() for i in infos}
            for shp in shps:
                stem = shp.filename[:-4].lower()
                missing = [ext for ext in (".shx", ".dbf") if stem + ext not in names]
                if missing:
                    raise InputError(f"Shapefile {shp.filename!r} in the archive lacks its "
                                     f"{' and '.join(missing)} file", file=str(path),
                                     hint="a Shapefile is several files: zip the .shp, .shx, .dbf and "
                                          ".prj (and .cpg) together")
                head = z.read(shp.filename)[:100] if shp.file_size else b""
                if len(head) < 100 or head[:4] != b"\x00\x00\x27\x0a":
                    what = ("empty" if shp.file_size == 0 else "zero-filled" if not head.strip(b"\x00")
                            else "not a Shapefile (bad header)")
                    raise InputError(f"Shapefile {shp.filename!r} in the archive is {what}", file=str(path),
                                     hint="the .shp file was not copied or saved completely")
    except zipfile.BadZipFile as exc:
        raise InputError("not a valid zip archive", file=str(path)) from exc
