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


def dbf_encoding(path: Path, zipped: bool) -> tuple[str | None, str | None]:
    """The text encoding of a Shapefile's ``.dbf`` when no ``.cpg`` names it: ``(encoding, note)``.

    GDAL assumes ISO-8859-1 for a ``.dbf`` without ``.cpg`` (or code page byte), and a GBK ``.dbf``
    then broke the read ("Cannot create a string of size 18446744073709551613"). Plain ASCII needs
    nothing (``(None, None)``); text that is valid UTF-8 is read as UTF-8, text that is valid GBK
    (GB18030) as GBK, with a note saying so.

    Raises
    ------
    InputError
        When the text is neither: ``--encoding`` must name it.
    """
    data: bytes | None = None
    if zipped:
        try:
            with zipfile.ZipFile(path) as z:
                names = {n.lower(): n for n in z.namelist()}
                dbfs = [n for low, n in names.items() if low.endswith(".dbf")]
                if not dbfs or any(low.endswith(".cpg") for low in names):
                    return None, None
                data = z.read(dbfs[0])
        except zipfile.BadZipFile:
            return None, None
    else:
        dbf = path.with_suffix(".dbf")
        if path.suffix.lower() != ".shp" or not dbf.exists() or path.with_suffix(".cpg").exists():
            return None, None
        data = dbf.read_bytes()
    if data is None or len(data) < 32:
        return None, None
    if data[29] not in (0, 0x57):  # a code page byte (LDID) that GDAL reads itself
        return None, None
    header_len = int.from_bytes(data[8:10], "little")
    body = data[header_len:]
    if body.isascii():
        return None, None
    for enc, label in (("utf-8", "UTF-8"), ("gb18030", "GBK")):
        try:
            body.decode(enc)
        except UnicodeDecodeError:
            continue
        return ("utf-8" if enc == "utf-8" else "gbk"), (
            f"the .dbf has no .cpg naming its encoding; its text is valid {label} and was read as {label} "
            "(pass --encoding to choose another)")
    raise InputError("the .dbf's text is in an unknown encoding and no .cpg names it", file=str(path),
                     hint="pass --encoding (e.g. gbk, gb18030, big5, utf-8), or add a .cpg file naming it")
