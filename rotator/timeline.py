"""A picture of one rotation: its steps as bars on one time axis.

Built from the report's dict (`Report.as_dict()`, or the journal's copy of it, so
`rotator show` draws a past rotation the same way): the probe, the primary write,
each target's write / read-back / signal / confirm, and the marks: the reset (when
seen), refused pastes, the key received (0) and the window's end.  Drawn as text
for the terminal (`render_text`, fitted to a width) and as inline SVG for the page
(`render_svg`: shapes carry letters and patterns, so it reads without colour).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any

from rotator.report import window_from

# One letter per phase: the text and the SVG say which bar is which without colour.
PHASES = {"probe": "p", "write": "w", "read_back": "r", "signal": "s", "confirm": "c", "run": "="}
BEFORE = 0.2  # of a broken axis: the part before the key
_FILL = {"probe": "#6b7280", "write": "#2563eb", "read_back": "#0d9488", "signal": "#d97706", "confirm": "#16a34a"}
_DASH = {"read_back": "4 2", "confirm": "2 2"}


@dataclass
class Row:
    label: str
    bars: list[tuple[str, float, float]] = field(default_factory=list)  # (phase, start, end), s after the key
    failed: bool = False


@dataclass
class Timeline:
    rows: list[Row]
    marks: list[tuple[str, float]]  # (what, seconds after the key): reset, refused, key, window end
    start: float
    end: float
    key_name: str = "key received"  # what the window counts from (`report.window_from`): a promote, a sync...

    def name(self, mark: str) -> str:
        return self.key_name if mark == "key" else _MARK_NAME[mark]

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-6)

    def at(self, t: float) -> float:
        """Where `t` falls on the axis, 0..1.  When the wait before the key (the operator's
        share) is longer than the window, it gets a fifth of the axis and the window the
        rest (the axis is broken at the key), so the window's bars stay readable."""
        if self.start < 0 and -self.start > self.end > 0:
            if t < 0:
                return BEFORE * (t - self.start) / -self.start
            return BEFORE + (1 - BEFORE) * t / self.end
        return (t - self.start) / self.span

    @property
    def broken(self) -> bool:
        return self.start < 0 and -self.start > self.end > 0


def build(report: dict[str, Any]) -> Timeline | None:
    """The timeline of a report dict; None when nothing ran (no key was written)."""
    targets = report.get("targets") or []
    window = report.get("window_seconds")
    if not targets or window is None:
        return None
    rows: list[Row] = []
    steps = report.get("steps") or {}
    if steps.get("probe") is not None:
        rows.append(Row("probe", [("probe", 0.0, float(steps["probe"]))]))
    ordered = sorted(targets, key=lambda t: (not t.get("primary"), t.get("kind") != "backend", t.get("started") or 0))
    for t in ordered:
        row = Row(
            t["name"] + (" (primary)" if t.get("primary") else ""), failed=t.get("status") not in ("ok", "unchanged")
        )
        phases = t.get("phases") or {}
        for name in ("write", "read_back", "signal", "confirm"):
            if name in phases:
                a, b = phases[name]
                row.bars.append((name, float(a), float(b)))
        if not row.bars and t.get("started") is not None and t.get("finished") is not None:
            row.bars.append(("run", float(t["started"]), float(t["finished"])))
        rows.append(row)
    marks: list[tuple[str, float]] = []
    received = report.get("key_received_at")
    reset = report.get("reset")
    if reset and received is not None:  # not seen before the key came: its time is the latest it can have been
        marks.append(("reset_bound" if reset.get("inferred") else "reset", float(reset["at"]) - float(received)))
    for r in report.get("refused_keys") or []:
        if received is not None and r.get("at") is not None:
            marks.append(("refused", float(r["at"]) - float(received)))
    marks += [("key", 0.0), ("end", float(window))]
    lo = min([0.0, *(m for _, m in marks)])
    hi = max([float(window), *(b for row in rows for _, _, b in row.bars)])
    return Timeline(rows, marks, lo, hi, window_from(str(report.get("kind") or ""), report.get("alternating")))


_MARK_CHAR = {"reset": "R", "reset_bound": "R", "refused": "x", "key": "K", "end": "E"}
_MARK_NAME = {
    "reset": "reset seen",
    "reset_bound": "reset at the latest",
    "refused": "refused paste",
    "key": "key received",
    "end": "window's end",
}


def _ms(v: float) -> str:
    return f"{v * 1000:.0f} ms" if abs(v) < 10 else f"{v:.1f} s"


def render_text(tl: Timeline, width: int = 80) -> list[str]:
    """Plain lines fitted to `width`: a label column, then the axis (letters per phase, marks as |)."""
    label_w = min(max((len(r.label) for r in tl.rows), default=5) + 1, max(width // 3, 8))
    cols = max(width - label_w - 2, 10)

    def col(t: float) -> int:
        return min(int(tl.at(t) * (cols - 1) + 0.5), cols - 1)

    mark_cols = {col(t): _MARK_CHAR[k] for k, t in tl.marks}
    lines = []
    head = [" "] * cols
    for c, ch in mark_cols.items():
        head[c] = ch
    lines.append(" " * label_w + "  " + "".join(head).rstrip())
    for row in tl.rows:
        cells = ["·"] * cols
        for c in mark_cols:
            cells[c] = "|"
        for phase, a, b in row.bars:
            for c in range(col(a), col(b) + 1):
                cells[c] = PHASES.get(phase, "=")
        label = row.label if len(row.label) <= label_w - 1 else row.label[: label_w - 2] + "…"
        lines.append(f"{label:<{label_w}}{'✗' if row.failed else ' '} " + "".join(cells))
    lines.append(" " * label_w + "  " + f"{_ms(tl.start)} … {_ms(tl.end)}")
    notes = [f"{_MARK_CHAR[k]} {tl.name(k)} {_ms(t)}" for k, t in tl.marks]
    if tl.broken:
        notes.append("(axis broken at K: the wait shortened)")
    notes += ["p probe", "w write", "r read-back", "s signal", "c confirm", "= ran", "✗ failed"]
    lines += _wrap(notes, width)
    return lines


def _wrap(items: list[str], width: int) -> list[str]:
    """Items joined by two spaces, in lines no wider than `width`."""
    lines: list[str] = []
    line = ""
    for item in items:
        if line and len(line) + 2 + len(item) > width:
            lines.append(line)
            line = item
        else:
            line = f"{line}  {item}" if line else item
    return [*lines, line] if line else lines


# The page shows the SVG at its own size (never scaled down: the figure scrolls sideways on a
# narrow screen), so these are the sizes the operator reads, in CSS pixels.
FONT = 13  # row labels and the marks' labels
SMALL = 12  # phase letters, the axis ends and the key
_NARROW = set("ijlft.,:;'|!()[] -·")
_WIDE = set("mwMW—→✗")


def text_width(text: str, size: float) -> float:
    """A generous estimate of `text`'s width in a sans-serif font (DejaVu Sans is among the
    widest): labels laid out with it do not overlap, which the page test measures."""
    em = 0.0
    for ch in text:
        em += 0.42 if ch in _NARROW else 1.0 if ch in _WIDE else 0.8 if ch.isupper() else 0.66
    return em * size + 2


def _fit(label: str, room: float, size: float) -> str:
    """`label`, cut with an ellipsis to fit `room` pixels."""
    if text_width(label, size) <= room:
        return label
    while label and text_width(label + "…", size) > room:
        label = label[:-1]
    return label + "…"


@dataclass
class _Label:
    text: str
    x: float  # where the mark's line is
    left: float
    right: float
    anchor: str
    lane: int = 0


def _mark_labels(tl: Timeline, x: Callable[[float], float], width: int) -> list[_Label]:
    """Each mark's label beside its line (left of it near the right edge), in the first lane
    above the plot where it overlaps no other label."""
    labels = []
    for kind, t in tl.marks:
        text = f"{_MARK_CHAR[kind]} {tl.name(kind)} {_ms(t)}"
        xm, w = x(t), text_width(text, FONT)
        if xm + 3 + w <= width - 2 or xm - 3 - w < 0:
            labels.append(_Label(text, xm, xm + 3, xm + 3 + w, "start"))
        else:
            labels.append(_Label(text, xm, xm - 3 - w, xm - 3, "end"))
    lanes: list[float] = []  # each lane's rightmost edge so far
    for label in sorted(labels, key=lambda lb: lb.left):
        for i, right in enumerate(lanes):
            if label.left > right + 6:
                label.lane, lanes[i] = i, label.right
                break
        else:
            label.lane = len(lanes)
            lanes.append(label.right)
    return labels


def render_svg(tl: Timeline, width: int = 860) -> str:
    """Inline SVG, shown at its own size: a bar per phase (fill, dash pattern and letter), a
    dashed line per mark with its name in a lane of its own when it would touch another."""
    label_w, row_h, lane_h = 190, 24, FONT + 6

    def x(t: float) -> float:
        return label_w + tl.at(t) * (width - label_w - 10)

    labels = _mark_labels(tl, x, width)
    lanes = max((lb.lane for lb in labels), default=0) + 1
    top = lanes * lane_h + 10
    bottom = top + row_h * len(tl.rows)
    key = "p probe · w write · r read-back · s signal · c confirm · ✗ failed"
    notes = [key] + (["The axis is broken at the key: the wait before it is shortened."] if tl.broken else [])
    height = bottom + 26 + 18 * len(notes)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="timeline of the rotation" '
        f'font-family="sans-serif" font-size="{FONT}">',
        "<title>timeline: probe, writes, read-backs, signals, confirms; reset, key received, window's end</title>",
    ]
    for i, row in enumerate(tl.rows):
        y = top + i * row_h
        name = row.label + (" ✗" if row.failed else "")
        shown = _fit(name, label_w - 10, FONT)
        full = f"<title>{escape(name)}</title>" if shown != name else ""
        out.append(f'<text x="4" y="{y + 17}" class="tl-row">{full}{escape(shown)}</text>')
        for phase, a, b in row.bars:
            x0, x1 = x(a), max(x(b), x(a) + 2)
            dash = f' stroke-dasharray="{_DASH[phase]}"' if phase in _DASH else ""
            fill = _FILL.get(phase, "#9ca3af")
            out.append(
                f'<rect x="{x0:.1f}" y="{y + 4}" width="{x1 - x0:.1f}" height="{row_h - 7}" fill="{fill}" '
                f'fill-opacity="0.35" stroke="#111"{dash}><title>{escape(row.label)} {phase.replace("_", "-")}: '
                f"{_ms(a)} → {_ms(b)}</title></rect>"
            )
            if x1 - x0 > SMALL + 4:
                out.append(
                    f'<text x="{x0 + 3:.1f}" y="{y + 17}" font-size="{SMALL}" class="tl-phase">'
                    f"{PHASES.get(phase, '=')}</text>"
                )
    for lb in labels:
        baseline = (lb.lane + 1) * lane_h
        out.append(
            f'<line x1="{lb.x:.1f}" y1="{baseline - FONT:.0f}" x2="{lb.x:.1f}" y2="{bottom}" stroke="#111" '
            'stroke-dasharray="3 3"/>'
        )
        at = lb.left if lb.anchor == "start" else lb.right
        out.append(
            f'<text x="{at:.1f}" y="{baseline}" text-anchor="{lb.anchor}" class="tl-mark">{escape(lb.text)}</text>'
        )
    out.append(
        f'<text x="{label_w}" y="{bottom + 18}" font-size="{SMALL}" class="tl-axis">{_ms(tl.start)}</text>'
        f'<text x="{width - 10}" y="{bottom + 18}" font-size="{SMALL}" text-anchor="end" class="tl-axis">'
        f"{_ms(tl.end)}</text>"
    )
    for i, note in enumerate(notes):
        out.append(f'<text x="4" y="{bottom + 40 + 18 * i}" font-size="{SMALL}" class="tl-key">{escape(note)}</text>')
    out.append("</svg>")
    return "".join(out)
