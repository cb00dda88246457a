"""What the dashboard and flows pages draw, computed in Python and drawn by their templates as
inline SVG: stacked bar charts of tips per day, a map of geo-tagged tips over administrator-
supplied boundaries (an equirectangular projection, no tiles), and translation coverage.

Owns reading the boundaries GeoJSON (ConsoleSettings.map_boundaries_geojson) and the YAML
files whose keys it counts. It loads nothing from the network (missions run offline), reads
no tip text and never sees a reporter identifier: storage.oversight hands it positions and
counts only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from config.settings import PROJECT_DIR
from storage.oversight import MapPoint

# Colours are SVG presentation attributes, not CSS: the console's CSP allows no inline style.
URGENCY_COLOURS = {"critical": "#c0392b", "high": "#e67e22", "normal": "#2e6db4", "low": "#8a939e"}
PALETTE = ("#2e6db4", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d4ac0d",
           "#7f8c8d", "#34495e", "#e84393")
MAX_BOUNDARY_POINTS = 20_000  # more is decimated: the page stays small on a field laptop


class BoundariesError(Exception):
    """The boundaries file is missing, not GeoJSON, or holds no line or polygon."""


# --- bar charts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class LegendEntry:
    fill: str
    name: str
    total: int


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    y_ticks: list[tuple[float, int]]  # (y, count)
    x_labels: list[tuple[float, str]]  # (x, "05-14")
    legend: list[LegendEntry]
    baseline: float
    left: float
    right: float


def _nice_ceiling(value: int) -> int:
    """1, 2, 5, 10, 20, 50...: a round top for the y axis."""
    if value <= 1:
        return 1
    magnitude = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def stacked_bars(
    days: Sequence[date],
    series: Mapping[str, Sequence[int]],
    *,
    colours: Mapping[str, str] | None = None,
    label: Mapping[str, str] | None = None,
    width: int = 720,
    height: int = 190,
) -> BarChart:
    """One bar per day, one coloured segment per category (in `series` order)."""
    left, right, top, bottom = 34.0, 6.0, 8.0, 22.0
    plot_w, plot_h = width - left - right, height - top - bottom
    names = list(series)
    fills = {name: (colours or {}).get(name) or PALETTE[n % len(PALETTE)]
             for n, name in enumerate(names)}
    shown = {name: (label or {}).get(name, name) for name in names}
    totals = [sum(series[name][d] for name in names) for d in range(len(days))]
    top_value = _nice_ceiling(max(totals, default=0))
    slot = plot_w / max(len(days), 1)
    baseline = top + plot_h
    bars: list[Bar] = []
    for d, day in enumerate(days):
        y = baseline
        for name in names:
            count = series[name][d]
            if not count:
                continue
            h = plot_h * count / top_value
            y -= h
            bars.append(Bar(x=round(left + d * slot + slot * 0.1, 2), y=round(y, 2),
                            width=round(slot * 0.8, 2), height=round(h, 2), fill=fills[name],
                            title=f"{day.isoformat()} · {shown[name]}: {count}"))
    ticks = sorted({0, top_value // 2, top_value})
    y_ticks = [(round(baseline - plot_h * v / top_value, 2), v) for v in ticks]
    step = max(1, math.ceil(len(days) / 6))
    x_labels = [(round(left + d * slot + slot / 2, 2), day.strftime("%m-%d"))
                for d, day in enumerate(days) if (len(days) - 1 - d) % step == 0]
    legend = [LegendEntry(fills[name], shown[name], sum(series[name])) for name in names]
    return BarChart(width=width, height=height, bars=bars, y_ticks=y_ticks, x_labels=x_labels,
                    legend=legend, baseline=baseline, left=left, right=width - right)


# --- the map ---------------------------------------------------------------------------------

Position = tuple[float, float]  # (longitude, latitude), GeoJSON's order


@dataclass(frozen=True)
class Boundaries:
    """Outlines read from a GeoJSON file: rings (closed) and lines (open)."""

    rings: list[list[Position]] = field(default_factory=list)
    lines: list[list[Position]] = field(default_factory=list)

    @property
    def positions(self) -> Iterable[Position]:
        for shape in (*self.rings, *self.lines):
            yield from shape


_cache: dict[Path, tuple[int, Boundaries]] = {}


def resolve_boundaries_path(value: str) -> Path | None:
    """The configured file; a relative path is relative to the repository root."""
    if not value.strip():
        return None
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else PROJECT_DIR / path


def load_boundaries(path: Path) -> Boundaries:
    """The outlines in a GeoJSON file (re-read when the file changes)."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise BoundariesError(f"{path}: cannot be read ({exc.strerror})") from exc
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BoundariesError(f"{path}: not a GeoJSON file ({exc})") from exc
    boundaries = Boundaries()
    _collect(document, boundaries)
    total = sum(len(shape) for shape in (*boundaries.rings, *boundaries.lines))
    if not total:
        raise BoundariesError(f"{path}: no polygon or line in it")
    if total > MAX_BOUNDARY_POINTS:
        every = math.ceil(total / MAX_BOUNDARY_POINTS)
        boundaries = Boundaries(rings=[_thin(r, every) for r in boundaries.rings],
                                lines=[_thin(line, every) for line in boundaries.lines])
    _cache[path] = (stamp, boundaries)
    return boundaries


def _thin(shape: list[Position], every: int) -> list[Position]:
    kept = shape[::every]
    return kept if kept[-1] == shape[-1] else [*kept, shape[-1]]


def _positions(value: Any) -> list[Position]:
    if not isinstance(value, list):
        raise BoundariesError("coordinates must be lists of [longitude, latitude]")
    out: list[Position] = []
    for item in value:
        if (not isinstance(item, list) or len(item) < 2
                or not all(isinstance(v, int | float) for v in item[:2])):
            raise BoundariesError("coordinates must be lists of [longitude, latitude]")
        lon, lat = float(item[0]), float(item[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise BoundariesError(f"[{lon}, {lat}] is not a longitude, latitude pair")
        out.append((lon, lat))
    return out


def _collect(node: Any, into: Boundaries) -> None:
    if not isinstance(node, dict):
        raise BoundariesError("expected a GeoJSON object")
    kind = node.get("type")
    coordinates = node.get("coordinates")
    if kind == "FeatureCollection":
        for feature in node.get("features") or []:
            _collect(feature, into)
    elif kind == "Feature":
        if node.get("geometry") is not None:
            _collect(node["geometry"], into)
    elif kind == "GeometryCollection":
        for geometry in node.get("geometries") or []:
            _collect(geometry, into)
    elif kind == "Polygon":
        into.rings.extend(_positions(ring) for ring in coordinates or [])
    elif kind == "MultiPolygon":
        into.rings.extend(_positions(ring) for polygon in coordinates or [] for ring in polygon)
    elif kind == "LineString":
        into.lines.append(_positions(coordinates))
    elif kind == "MultiLineString":
        into.lines.extend(_positions(line) for line in coordinates or [])
    elif kind not in ("Point", "MultiPoint"):  # places are not outlines: ignored
        raise BoundariesError(f"unsupported GeoJSON type {kind!r}")


@dataclass(frozen=True)
class Dot:
    tip_id: int
    x: float
    y: float
    fill: str
    title: str


@dataclass(frozen=True)
class TipMap:
    width: int
    height: int
    paths: list[str]  # SVG path data, one per ring or line
    dots: list[Dot]
    # (west, south, east, north) in degrees: what the frame shows.
    extent: tuple[float, float, float, float]


def draw_map(
    points: Sequence[MapPoint],
    boundaries: Boundaries | None,
    *,
    max_width: int = 720,
    max_height: int = 440,
) -> TipMap | None:
    """Points (and outlines) in an equirectangular projection: x = longitude * cos(middle
    latitude), y = latitude, scaled into the frame. The frame is the boundaries' extent, or the
    points' extent (padded) when there are none. None when there is nothing to draw."""
    positions = [(p.longitude, p.latitude) for p in points]
    if boundaries is not None:
        positions.extend(boundaries.positions)
    if not positions:
        return None
    west, east = min(p[0] for p in positions), max(p[0] for p in positions)
    south, north = min(p[1] for p in positions), max(p[1] for p in positions)
    # At least ~1 km across, and a margin, so one tip or a tight cluster is not on the edge.
    pad_lon = max((east - west) * 0.05, 0.005)
    pad_lat = max((north - south) * 0.05, 0.005)
    west, east, south, north = west - pad_lon, east + pad_lon, south - pad_lat, north + pad_lat
    squeeze = math.cos(math.radians((north + south) / 2))
    span_x, span_y = (east - west) * max(squeeze, 0.01), north - south
    scale = min(max_width / span_x, max_height / span_y)
    width, height = max(round(span_x * scale), 40), max(round(span_y * scale), 40)

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return (round((lon - west) * max(squeeze, 0.01) * scale, 1),
                round((north - lat) * scale, 1))

    paths = []
    if boundaries is not None:
        for shape, closed in ([(r, True) for r in boundaries.rings]
                              + [(line, False) for line in boundaries.lines]):
            if len(shape) < 2:
                continue
            coords = [xy(lon, lat) for lon, lat in shape]
            data = "M" + " L".join(f"{x},{y}" for x, y in coords)
            paths.append(data + (" Z" if closed else ""))
    dots = []
    for p in points:
        x, y = xy(p.longitude, p.latitude)
        dots.append(Dot(tip_id=p.tip_id, x=x, y=y, fill=URGENCY_COLOURS.get(p.urgency, "#333"),
                        title=f"#{p.tip_id} · {p.latitude:.4f}, {p.longitude:.4f}"))
    return TipMap(width=width, height=height, paths=paths, dots=dots,
                  extent=(round(west, 4), round(south, 4), round(east, 4), round(north, 4)))


def duration_text(value: timedelta | None) -> str:
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d}"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


# --- translation coverage (the flows page) ---------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """How much of the default language's keys one language has, in one kind of file."""

    present: int
    total: int
    readable: bool = True

    @property
    def percent(self) -> int:
        return 100 if not self.total else math.floor(100 * self.present / self.total)


@dataclass(frozen=True)
class LanguageCoverage:
    language: str
    responses: Coverage
    messages: Coverage


_KEYWORDS = "keywords"  # command words in config/messages/<lang>.yml: lists, not texts


def _keys(path: Path, *, skip: frozenset[str] = frozenset()) -> set[str] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(key) for key in data if str(key) not in skip}


def translation_coverage(
    *, languages: Sequence[str], default: str, responses_dir: Path, messages_dir: Path
) -> list[LanguageCoverage]:
    """Per language: the share of the default language's dialogue responses
    (nlu/project/responses) and gateway texts (config/messages) it translates. Reads the YAML
    files only; `tipline flows check` says what exactly is missing."""
    skip = frozenset({_KEYWORDS})
    wanted = {"responses": _keys(responses_dir / f"{default}.yml"),
              "messages": _keys(messages_dir / f"{default}.yml", skip=skip)}
    result = []
    for lang in languages:
        found = {"responses": _keys(responses_dir / f"{lang}.yml"),
                 "messages": _keys(messages_dir / f"{lang}.yml", skip=skip)}
        parts = {}
        for kind in ("responses", "messages"):
            base, have = wanted[kind], found[kind]
            if base is None or have is None:
                parts[kind] = Coverage(0, len(base or ()), readable=False)
            else:
                parts[kind] = Coverage(len(base & have), len(base))
        result.append(LanguageCoverage(lang, parts["responses"], parts["messages"]))
    return result
