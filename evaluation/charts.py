"""The run page's charts, rendered by the server as inline SVG with matplotlib.

No JavaScript: the page works as plain HTML, and tests read the SVG. Figures are built with the
object-oriented API (`Figure`, never pyplot's global state), so concurrent requests in threads
do not share a figure; the Agg backend is selected in case anything imports pyplot. Text stays
text in the SVG (svg.fonttype none: small, searchable, selectable), and ids are salted with a
constant so the same data gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib import colormaps  # noqa: E402 -- after the backend is chosen
from matplotlib.figure import Figure  # noqa: E402

LABELLED_BARS_MAX = 40  # above this many classes the bars go unlabelled (the table names them)
ACCENT = "#2f6fdb"  # static/css/app.css --accent
SERIES_COLOURS = ["#2f6fdb", "#d9822b", "#18703a", "#b42318"]
RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "tinyrag",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _plain(text: str) -> str:
    """A label shown as typed: a `$` in a class name must not start mathtext."""
    return text.replace("$", r"\$")


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # inline in HTML: no XML prolog, no DOCTYPE


def recall_curve_svg(curves: Mapping[str, Mapping[int, float | None]]) -> str:
    """Recall@k against k, one line per series (e.g. "image → image", "text → image")."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(5.5, 3.2))
        ax = fig.add_subplot()
        ks: set[int] = set()
        for n, (label, points) in enumerate(curves.items()):
            xs = sorted(k for k, v in points.items() if v is not None)
            ks.update(xs)
            ax.plot(
                xs, [points[k] for k in xs], marker="o", label=_plain(label),
                color=SERIES_COLOURS[n % len(SERIES_COLOURS)],
            )  # fmt: skip
        ax.set_xlabel("k")
        ax.set_ylabel("Recall@k")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(sorted(ks))
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(loc="lower right", frameon=False)
        ax.set_title("Recall@k")
        return _svg(fig)


def per_class_bars_svg(
    rows: Sequence[Mapping], metric: str, *, title: str, label_key: str = "name"
) -> str:
    """One bar per class, sorted worst first, coloured red (0) to green (1), with the mean."""
    ordered = sorted(
        (r for r in rows if r.get(metric) is not None), key=lambda r: (r[metric], r[label_key])
    )
    values = [float(r[metric]) for r in ordered]
    labelled = len(ordered) <= LABELLED_BARS_MAX
    with matplotlib.rc_context(RC):
        width = min(11.0, max(4.5, 0.22 * len(ordered) + 2.0)) if labelled else 11.0
        fig = Figure(figsize=(width, 2.8))
        ax = fig.add_subplot()
        cmap = colormaps["RdYlGn"]
        ax.bar(range(len(values)), values, color=[cmap(v) for v in values], width=0.85)
        if values:
            mean = sum(values) / len(values)
            ax.axhline(mean, color=ACCENT, linewidth=1, linestyle="--")
            ax.text(len(values) - 0.5, mean, f" mean {mean:.3f}", va="bottom", ha="right",
                    color=ACCENT)  # fmt: skip
        ax.set_ylim(0, 1.12)  # room for the mean's label above a perfect score
        ax.set_ylabel(_plain(metric))
        ax.set_xlim(-0.6, max(len(values), 1) - 0.4)
        if labelled:
            ax.set_xticks(
                range(len(ordered)), [_plain(str(r[label_key])) for r in ordered],
                rotation=60, ha="right",
            )  # fmt: skip
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(ordered)} classes, worst first")
        ax.set_title(_plain(title))
        return _svg(fig)


def rag_bars_svg(lir: Mapping[str, float | None], context_hit_rate: float | None) -> str:
    """LIR per context side by side, and the share of contexts that held the true class."""
    labels, values, colours = [], [], []
    for n, (context, value) in enumerate(lir.items()):
        labels.append(f"LIR ({context})")
        values.append(value or 0.0)
        colours.append(SERIES_COLOURS[n % len(SERIES_COLOURS)])
    if context_hit_rate is not None:
        labels.append("context hit rate")
        values.append(context_hit_rate)
        colours.append("#8c96a0")
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(5.0, 3.0))
        ax = fig.add_subplot()
        bars = ax.bar(range(len(values)), values, color=colours, width=0.6)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2)
        ax.set_xticks(range(len(labels)), [_plain(label) for label in labels])
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("share of samples")
        ax.set_title("RAG: label inclusion by context")
        return _svg(fig)


def run_charts(metrics: Mapping, per_class: Mapping, ks: Sequence[int]) -> dict[str, str]:
    """The SVGs of one run's page, from its stored metrics: only those it has data for."""
    charts: dict[str, str] = {}
    curves = {
        label: {k: metrics[mode].get(f"recall@{k}") for k in ks}
        for mode, label in (("image", "image → image"), ("text", "text → image"))
        if mode in metrics
    }
    if curves and ks:
        charts["recall_curve"] = recall_curve_svg(curves)
    if per_class.get("image") and ks:
        metric = f"recall@{min(ks)}"
        charts["image_per_class"] = per_class_bars_svg(
            per_class["image"], metric, title=f"image → image: {metric} per class"
        )
    if per_class.get("zeroshot"):
        charts["zeroshot_per_class"] = per_class_bars_svg(
            per_class["zeroshot"], "top1_accuracy", title="zero-shot: top-1 accuracy per class"
        )
    if rag := metrics.get("rag"):
        charts["rag"] = rag_bars_svg(
            {context: result["lir"] for context, result in rag["contexts"].items()},
            rag.get("context_hit_rate"),
        )
    return charts
