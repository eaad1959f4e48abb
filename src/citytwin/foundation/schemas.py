"""The standard data model (A2): a registry of dataset schemas.

A :class:`Schema` lists its :class:`Field` s with types, canonical units, header
aliases (Chinese and English), ranges, personal-data kinds and the unique key.
Built-in schemas cover the city's common data; users register their own from
YAML (``citytwin schema add FILE``), kept in the workspace.

Examples
--------
>>> s = get_schema("city_panel")
>>> s.match_header("年份")
'year'
>>> s.match_header("城市名称")
'city'
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from citytwin.foundation.errors import InputError, NotFoundError

FieldType = Literal["string", "int", "float", "bool", "date", "timestamp", "geometry"]
PiiKind = Literal["name", "phone", "id_number", "email", "address"]
FIELD_TYPES = ("string", "int", "float", "bool", "date", "timestamp", "geometry")


@dataclass(frozen=True)
class Field:
    """One field of a schema.

    Parameters
    ----------
    name
        Canonical field name (snake_case, English).
    type
        One of ``string, int, float, bool, date, timestamp, geometry``.
    required
        A record missing this field is quarantined.
    aliases
        Other header spellings (Chinese or English) that mean this field.
    unit
        Canonical unit values are stored in (see :mod:`citytwin.foundation.units`).
    min, max
        Valid range (inclusive); values outside are quarantined.
    pii
        Kind of personal data (masked for roles without clearance).
    choices
        Allowed values, if the field is categorical.
    """

    name: str
    type: FieldType = "string"
    required: bool = False
    aliases: tuple[str, ...] = ()
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    pii: PiiKind | None = None
    choices: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Schema:
    """A dataset schema.

    Parameters
    ----------
    name
        Registry name, e.g. ``city_panel``.
    fields
        The declared fields.
    key
        Fields that identify a record; duplicates on the key are quarantined (first kept).
    geometry
        ``None`` (no geometry), ``"point"`` (point from lon/lat or geometry) or ``"any"``.
    extra
        ``"keep"`` keeps columns not in the schema (e.g. indicator columns of a city panel);
        ``"drop"`` drops them (they stay in the source file, recorded in the catalog).
    layout
        ``"long"`` (one record a row) or ``"wide_observations"`` (sensor files with one column
        per measured property, melted to one observation per value).
    column_map
        Source columns that mean a field although no alias says so (YAML ``map: {year: 年度标识}``;
        the same as ``citytwin ingest --map year=年度标识``).
    """

    name: str
    fields: tuple[Field, ...]
    key: tuple[str, ...] = ()
    geometry: Literal["point", "any"] | None = None
    extra: Literal["keep", "drop"] = "keep"
    layout: Literal["long", "wide_observations"] = "long"
    description: str = ""
    builtin: bool = True
    #: ``((field, column), ...)``: source columns named for fields whatever the aliases say (YAML ``map:``)
    column_map: tuple[tuple[str, str], ...] = ()

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise NotFoundError(f"schema {self.name!r} has no field {name!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def match_header(self, header: str) -> str | None:
        """Return the field a source header means, or None."""
        key = normalize_header(header)
        for f in self.fields:
            if key == normalize_header(f.name) or key in {normalize_header(a) for a in f.aliases}:
                return f.name
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fields"] = [{k: v for k, v in asdict(f).items() if v not in (None, (), "", False) or k == "name"}
                       for f in self.fields]
        d["key"] = list(self.key)
        return d


def normalize_header(text: str) -> str:
    """Normalise a header for alias matching: NFKC, lower case, no spaces, brackets or punctuation."""
    t = unicodedata.normalize("NFKC", str(text)).strip().lower().lstrip("\ufeff")
    return re.sub(r"[\s_\-()（）\[\]【】:：./]+", "", t)


# ---------------------------------------------------------------------------
# built-in schemas
# ---------------------------------------------------------------------------
_LON = ("lon", "lng", "longitude", "经度", "x", "centroid_lon", "long")
_LAT = ("lat", "latitude", "纬度", "y", "centroid_lat")
_ADCODE = ("adcode", "city_code", "citycode", "行政区划代码", "区划代码", "城市代码", "code", "gb_code")


def _f(name: str, type: FieldType = "string", **kw: Any) -> Field:
    if "aliases" in kw:
        kw["aliases"] = tuple(kw["aliases"])
    if "choices" in kw:
        kw["choices"] = tuple(kw["choices"])
    return Field(name, type, **kw)


BUILTIN: dict[str, Schema] = {}


def _add(schema: Schema) -> None:
    BUILTIN[schema.name] = schema


_add(Schema(
    "city_panel",
    (
        _f("city", required=True, aliases=("城市", "城市名称", "地区", "地级市", "城市名", "city_name", "name", "市")),
        _f("year", "int", required=True, min=1900, max=2100, aliases=("年份", "年", "年度", "yr")),
        _f("adcode", aliases=_ADCODE, description="6-digit administrative code, resolved from the city name"),
        _f("province", aliases=("省份", "省", "所属省份", "province_name")),
    ),
    key=("city", "year"),
    extra="keep",
    description="City-year panel: one row per city and year, indicator columns kept with units normalised.",
))
_add(Schema(
    "admin_boundary",
    (
        _f("adcode", aliases=_ADCODE),
        _f("name", required=True, aliases=("名称", "城市", "city", "行政区名称", "name_zh")),
        _f("province", aliases=("省份", "省")),
        _f("level", aliases=("级别", "行政级别")),
        _f("geometry", "geometry", required=True),
    ),
    key=("adcode",),
    geometry="any",
    description="Administrative boundaries (province, prefecture, county) with codes.",
))
_add(Schema(
    "admin_unit",
    (
        _f("adcode", aliases=(*_ADCODE, "ext_id"), description="resolved from the name when missing"),
        _f("name", required=True, aliases=("名称", "城市", "city", "ext_name", "name_zh")),
        _f("province", aliases=("省份", "省")),
        _f("lon", "float", min=-180, max=180, aliases=_LON),
        _f("lat", "float", min=-90, max=90, aliases=_LAT),
    ),
    key=(),
    geometry="point",
    description="Administrative units as a table (codes, names, optional coordinates).",
))
_add(Schema(
    "poi",
    (
        _f("poi_id", aliases=("id", "osm_id", "poiid", "编号")),
        _f("name", aliases=("名称", "poi_name")),
        _f("category", aliases=("类别", "类型", "type", "amenity", "kind", "category_code")),
        _f("lon", "float", min=-180, max=180, aliases=_LON),
        _f("lat", "float", min=-90, max=90, aliases=_LAT),
        _f("geometry", "geometry"),
    ),
    key=("poi_id",),
    geometry="point",
    description="Points of interest with category.",
))
_add(Schema(
    "land_use",
    (
        _f("parcel_id", aliases=("id", "osm_id", "地块编号")),
        _f("land_use", aliases=("landuse", "用地类型", "用地性质", "class", "category")),
        _f("geometry", "geometry", required=True),
    ),
    key=("parcel_id",),
    geometry="any",
    description="Land-use polygons with a class.",
))
_add(Schema(
    "street_network",
    (
        _f("edge_id", aliases=("id", "osm_id")),
        _f("u", "int", aliases=("from", "source")),
        _f("v", "int", aliases=("to", "target")),
        _f("highway", aliases=("road_class", "道路等级", "fclass")),
        _f("length", "float", unit="m", min=0, aliases=("length_m", "长度")),
        _f("geometry", "geometry", required=True),
    ),
    key=(),
    geometry="any",
    description="Street network edges (lines) with from/to nodes.",
))
_add(Schema(
    "building",
    (
        _f("building_id", aliases=("id", "osm_id", "建筑编号")),
        _f("building", aliases=("type", "建筑类型", "use")),
        _f("height", "float", unit="m", min=0, max=1000, aliases=("高度", "height_m")),
        _f("levels", "float", min=0, max=200, aliases=("building:levels", "层数", "floors")),
        _f("geometry", "geometry", required=True),
    ),
    key=("building_id",),
    geometry="any",
    description="Building footprints.",
))
_add(Schema(
    "sensor_observation",
    (
        _f("entity", required=True, aliases=("station", "sensor", "sensor_id", "entity_id", "站点", "监测点", "node")),
        _f("property", required=True, aliases=("variable", "pollutant", "指标", "parameter")),
        _f("time", "timestamp", required=True, aliases=("datetime", "timestamp", "observedat", "时间", "observed_at")),
        _f("value", "float", aliases=("值", "reading", "measurement")),
        _f("unit", aliases=("单位", "units")),
        _f("lon", "float", min=-180, max=180, aliases=_LON),
        _f("lat", "float", min=-90, max=90, aliases=_LAT),
    ),
    key=("entity", "property", "time"),
    geometry="point",
    layout="long",
    description="Sensor observations, one value per row (long form). Wide files (one column per "
                "property) are melted at ingest.",
))
_add(Schema(
    "complaint",
    (
        _f("complaint_id", required=True, aliases=("id", "unique_key", "servicerequestnum", "srrecordid", "工单编号", "编号")),
        _f("category", aliases=("complaint_type", "srtype", "type", "类别", "诉求类型")),
        _f("description", aliases=("descriptor", "内容", "诉求内容", "details")),
        _f("created", "timestamp", required=True, aliases=("created_date", "createddate", "创建时间", "受理时间")),
        _f("closed", "timestamp", aliases=("closed_date", "closedate", "办结时间")),
        _f("due", "timestamp", aliases=("due_date", "duedate", "期限")),
        _f("status", aliases=("srstatus", "状态")),
        _f("agency", aliases=("department", "部门", "承办部门")),
        _f("address", pii="address", aliases=("incident_address", "地址")),
        _f("reporter_name", pii="name", aliases=("姓名", "contact_name", "name")),
        _f("reporter_phone", pii="phone", aliases=("电话", "phone", "手机号", "contact_phone")),
        _f("lon", "float", min=-180, max=180, aliases=_LON),
        _f("lat", "float", min=-90, max=90, aliases=_LAT),
    ),
    key=("complaint_id",),
    geometry="point",
    description="Resident complaints / service requests (12345, 311).",
))
_add(Schema(
    "renewal_project",
    (
        _f("project_id", required=True, aliases=("id", "项目编号")),
        _f("name", required=True, aliases=("项目名称",)),
        _f("stage", aliases=("阶段",), choices=("planning", "financing", "construction", "monitoring",
                                                 "evaluation", "feedback")),
        _f("budget", "float", unit="CNY", min=0, aliases=("投资额", "预算")),
        _f("start", "date", aliases=("开工日期", "start_date")),
        _f("end", "date", aliases=("竣工日期", "end_date")),
        _f("department", aliases=("责任部门", "owner")),
        _f("geometry", "geometry"),
    ),
    key=("project_id",),
    geometry="any",
    description="Urban renewal projects through their lifecycle.",
))
_add(Schema(
    "table",
    (),
    extra="keep",
    description="Any table, kept as read (types inferred); no field rules beyond quality checks.",
))


def _from_dict(d: dict[str, Any], *, source: str) -> Schema:
    try:
        fields = []
        for fd in d.get("fields", []):
            fd = dict(fd)
            t = fd.get("type", "string")
            if t not in FIELD_TYPES:
                raise InputError(f"field {fd.get('name')!r}: unknown type {t!r} (use one of {', '.join(FIELD_TYPES)})",
                                 file=source)
            fields.append(_f(fd.pop("name"), fd.pop("type", "string"), **fd))
        return Schema(
            name=d["name"],
            fields=tuple(fields),
            key=tuple(d.get("key", ())),
            geometry=d.get("geometry"),
            extra=d.get("extra", "keep"),
            layout=d.get("layout", "long"),
            description=d.get("description", ""),
            builtin=False,
            column_map=_column_map(d.get("map") or {}, source),
        )
    except KeyError as exc:
        raise InputError(f"schema is missing {exc.args[0]!r}", file=source) from exc
    except TypeError as exc:
        raise InputError(f"schema has an unknown attribute: {exc}", file=source) from exc


def _column_map(m: Any, source: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(m, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in m.items()):
        raise InputError("schema 'map' must map field names to column names (e.g. map: {year: 年度标识})",
                         file=source)
    return tuple(m.items())


def load_schema_file(path: str | Path) -> Schema:
    """Load a user schema from YAML (same attributes as :class:`Schema` / :class:`Field`)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read schema: {exc}", file=str(p)) from exc
    if not isinstance(data, dict):
        raise InputError("schema file must hold a mapping", file=str(p))
    schema = _from_dict(data, source=str(p))
    for k in schema.key:
        if k not in schema.field_names:
            raise InputError(f"key field {k!r} is not a declared field", file=str(p))
    return schema


def get_schema(name: str, user_dir: Path | None = None) -> Schema:
    """Return a built-in schema or a user schema registered in ``user_dir``."""
    if user_dir is not None:
        p = user_dir / f"{name}.yaml"
        if p.exists():
            return load_schema_file(p)
    if name in BUILTIN:
        return BUILTIN[name]
    known = sorted(BUILTIN) + (sorted(q.stem for q in user_dir.glob("*.yaml")) if user_dir else [])
    raise NotFoundError(f"unknown schema {name!r}", hint=f"known schemas: {', '.join(known)}")


def list_schemas(user_dir: Path | None = None) -> list[Schema]:
    out = dict(BUILTIN)
    if user_dir is not None and user_dir.exists():
        for p in sorted(user_dir.glob("*.yaml")):
            out[p.stem] = load_schema_file(p)
    return list(out.values())
