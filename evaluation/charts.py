"""The run page's charts, rendered by the server as SVG with matplotlib.

No JavaScript: the page works as plain HTML, and tests read the SVG. Figures are built with the
object-oriented API (`Figure`, never pyplot's global state), so concurrent requests in threads
do not share a figure; the Agg backend is selected in case anything imports pyplot. Text stays
text in the SVG (svg.fonttype none: small, searchable, selectable), and ids are salted with a
constant so the same data gives the same bytes.

Readable on a phone: every figure is 4.8 in wide with 11 pt text, so shrunk to a 390 px screen
its text is still about 10 px; legends sit outside the plotted area, bars are horizontal with
the class names beside them, and a chart of many classes names the worst and the best ones
rather than drawing hundreds of unlabelled bars. Each chart has a `*_figure` function (what
tests measure) and a `*_svg` one (what the page shows).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

from django.utils.translation import gettext, ngettext  # noqa: E402
from matplotlib import colormaps  # noqa: E402 -- after the backend is chosen
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

WIDTH = 4.8  # inches: 461 px at its natural size, shrunk to ~340 px on a phone
ROW_INCHES = 0.27  # one horizontal bar and its class name
LABELLED_BARS_MAX = 24  # up to this many classes every one is drawn and named...
SHOWN_EACH_END = 10  # ...above it, the worst ten and the best ten, by name
NAME_CHARS = 30  # a longer class name is cut with an ellipsis (the tables have it whole)
GROUP_CHARS = 40  # the same for a grouped chart's group label
ACCENT = "#2f62d0"  # static/css/app.css --accent
SERIES_COLOURS = ["#2f62d0", "#c8621a", "#17693a", "#b42318"]
MUTED = "#5b6570"
RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "tinyrag",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelcolor": "#1b2027",
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _plain(text: str) -> str:
    """A label shown as typed: a `$` in a class name must not start mathtext."""
    return text.replace("$", r"\$")


def _metric_label(metric: str) -> str:
    """A stored metric's key as the page writes it: recall@1 -> Recall@1, top1_accuracy ->
    top-1 accuracy."""
    label = metric.replace("recall@", "Recall@").replace("precision@", "Precision@")
    return label.replace("top1_", "top-1 ").replace("top5_", "top-5 ").replace("_", " ")


def _short(name: str, limit: int = NAME_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # inline in HTML: no XML prolog, no DOCTYPE


# --- Recall@k -------------------------------------------------------------------------------


def recall_curve_figure(curves: Mapping[str, Mapping[int, float | None]]) -> Figure:
    """Recall@k against k, one line per series (e.g. "image → image", "text → image"); the
    legend below the plot, outside the data."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(WIDTH, 3.4), layout="constrained")
        ax = fig.add_subplot()
        ks: set[int] = set()
        for n, (label, points) in enumerate(curves.items()):
            xs = sorted(k for k, v in points.items() if v is not None)
            ks.update(xs)
            ax.plot(
                xs, [points[k] for k in xs], marker="o", label=_plain(label),
                color=SERIES_COLOURS[n % len(SERIES_COLOURS)], linewidth=2,
            )  # fmt: skip
        if ks and max(ks) / min(ks) >= 20:  # 1..100 on a linear axis crowds 1, 5 and 10
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_locator(FixedLocator(sorted(ks)))
        ax.set_xticklabels([str(k) for k in sorted(ks)])
        ax.set_xlabel(gettext("k: how many results are looked at"))
        ax.set_ylabel(gettext("Recall@k"))
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.set_title(gettext("Queries with a right-class image in the top k"))
        if curves:
            fig.legend(loc="outside lower center", ncols=min(len(curves), 2), frameon=False)
        return fig


def recall_curve_svg(curves: Mapping[str, Mapping[int, float | None]]) -> str:
    return _svg(recall_curve_figure(curves))


# --- per class ------------------------------------------------------------------------------


def shown_classes(rows: Sequence[Mapping], metric: str, *, label_key: str = "name"):
    """The classes a per-class chart draws, worst first, and how many it leaves out between
    the worst and the best (0: it draws them all)."""
    ordered = sorted(
        (r for r in rows if r.get(metric) is not None), key=lambda r: (r[metric], r[label_key])
    )
    if len(ordered) <= LABELLED_BARS_MAX:
        return ordered, [], 0
    worst, best = ordered[:SHOWN_EACH_END], ordered[-SHOWN_EACH_END:]
    return worst, best, len(ordered) - len(worst) - len(best)


def per_class_bars_figure(
    rows: Sequence[Mapping], metric: str, *, title: str, label_key: str = "name"
) -> Figure:
    """One named horizontal bar per class, worst at the top, coloured red (0) to green (1),
    the mean as a dashed line. Above LABELLED_BARS_MAX classes: the worst and the best
    SHOWN_EACH_END, with a line saying how many are left out between them."""
    worst, best, hidden = shown_classes(rows, metric, label_key=label_key)
    values = [float(r[metric]) for r in rows if r.get(metric) is not None]
    shown = worst + best
    # a gap row between the worst and the best says what is left out
    positions = list(range(len(worst))) + [len(worst) + 1 + n for n in range(len(best))]
    lines = len(shown) + (1 if hidden else 0)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(WIDTH, 1.3 + ROW_INCHES * max(lines, 1)), layout="constrained")
        ax = fig.add_subplot()
        cmap = colormaps["RdYlGn"]
        shown_values = [float(r[metric]) for r in shown]
        bars = ax.barh(positions, shown_values, color=[cmap(v) for v in shown_values], height=0.75)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in shown_values], padding=3, fontsize=9)
        ax.set_yticks(positions, [_plain(_short(str(r[label_key]))) for r in shown])
        ax.tick_params(axis="y", length=0)
        if hidden:
            ax.text(
                0.5, len(worst), ngettext("… %(n)s class in between …",
                                          "… %(n)s classes in between …", hidden) % {"n": hidden},
                ha="center",
                va="center", color=MUTED, fontsize=10, transform=ax.get_yaxis_transform(),
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
            )  # fmt: skip
        ax.set_ylim(max(lines, 1) - 0.4, -0.6)  # worst at the top
        ax.set_xlim(0, 1.15)  # room for a perfect score's label
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        mean = sum(values) / len(values) if values else None
        if mean is not None:
            ax.axvline(mean, color=ACCENT, linewidth=1.2, linestyle="--")
            scope = (
                gettext("the %(worst)s worst and %(best)s best of %(n)s classes")
                % {"worst": len(worst), "best": len(best), "n": len(values)}
                if hidden
                else ngettext("%(n)s class, worst first", "%(n)s classes, worst first", len(values))
                % {"n": len(values)}
            )
            label = gettext("%(metric)s; dashed: mean %(mean)s") % {
                "metric": _plain(_metric_label(metric)),
                "mean": f"{mean:.3f}",
            }
            ax.set_xlabel(f"{label}\n{scope}")
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(_plain(title))
        return fig


def per_class_bars_svg(
    rows: Sequence[Mapping], metric: str, *, title: str, label_key: str = "name"
) -> str:
    return _svg(per_class_bars_figure(rows, metric, title=title, label_key=label_key))


# --- RAG ------------------------------------------------------------------------------------


def rag_bars_figure(lir: Mapping[str, float | None], context_hit_rate: float | None) -> Figure:
    """LIR per context, and the share of retrieved contexts that held the true class."""
    labels, values, colours = [], [], []
    for n, (context, value) in enumerate(lir.items()):
        labels.append(gettext("LIR (%(context)s)") % {"context": context})
        values.append(value or 0.0)
        colours.append(SERIES_COLOURS[n % len(SERIES_COLOURS)])
    if context_hit_rate is not None:
        labels.append(gettext("context hit rate"))
        values.append(context_hit_rate)
        colours.append("#8c96a0")
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(WIDTH, 1.5 + 0.45 * max(len(values), 1)), layout="constrained")
        ax = fig.add_subplot()
        positions = range(len(values))
        bars = ax.barh(positions, values, color=colours, height=0.6)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=3)
        ax.set_yticks(positions, [_plain(label) for label in labels])
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(len(values) - 0.5, -0.5)
        ax.set_xlim(0, 1.18)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlabel(gettext("share of the sampled images"))
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(gettext("Descriptions that name the true class"))
        return fig


def rag_bars_svg(lir: Mapping[str, float | None], context_hit_rate: float | None) -> str:
    return _svg(rag_bars_figure(lir, context_hit_rate))


def run_charts(metrics: Mapping, per_class: Mapping, ks: Sequence[int]) -> dict[str, str]:
    """The SVGs of one run's page, from its stored metrics: only those it has data for."""
    charts: dict[str, str] = {}
    curves = {
        label: {k: metrics[mode].get(f"recall@{k}") for k in ks}
        for mode, label in (("image", gettext("image → image")), ("text", gettext("text → image")))
        if mode in metrics
    }
    if curves and ks:
        charts["recall_curve"] = recall_curve_svg(curves)
    if per_class.get("image") and ks:
        metric = f"recall@{min(ks)}"
        charts["image_per_class"] = per_class_bars_svg(
            per_class["image"],
            metric,
            title=gettext("Image → image: Recall@%(k)s per class") % {"k": min(ks)},
        )
    if per_class.get("zeroshot"):
        charts["zeroshot_per_class"] = per_class_bars_svg(
            per_class["zeroshot"],
            "top1_accuracy",
            title=gettext("Zero-shot: top-1 accuracy per class"),
        )
    if rag := metrics.get("rag"):
        charts["rag"] = rag_bars_svg(
            {context: result["lir"] for context, result in rag["contexts"].items()},
            rag.get("context_hit_rate"),
        )
    return charts


# --- languages side by side -----------------------------------------------------------------


def grouped_bars_figure(
    groups: Mapping[str, Sequence[float | None]], series: Sequence[str], *, title: str
) -> Figure:
    """One group of horizontal bars per run (e.g. "Indonesian · the multilingual encoder"),
    one bar per series (Recall@1, Recall@5, ...) in the series' colours, the legend below the
    plot; a value the run did not measure is no bar."""
    n_series = max(len(series), 1)
    height = 0.8 / n_series
    with matplotlib.rc_context(RC):
        fig = Figure(
            figsize=(WIDTH, 1.6 + 0.3 * n_series * max(len(groups), 1)), layout="constrained"
        )
        ax = fig.add_subplot()
        for s_index, name in enumerate(series):
            positions, values = [], []
            for g_index, group_values in enumerate(groups.values()):
                value = group_values[s_index] if s_index < len(group_values) else None
                if value is not None:
                    positions.append(g_index - 0.4 + height * (s_index + 0.5))
                    values.append(float(value))
            bars = ax.barh(
                positions, values, height=height * 0.9, label=_plain(name),
                color=SERIES_COLOURS[s_index % len(SERIES_COLOURS)],
            )  # fmt: skip
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=9)
        # a group is a language and a route: "Bahasa Indonesia · multilingual"
        ax.set_yticks(range(len(groups)), [_plain(_short(g, GROUP_CHARS)) for g in groups])
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(len(groups) - 0.5, -0.5)  # the first group at the top
        ax.set_xlim(0, 1.18)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.grid(axis="x", alpha=0.3)
        if title:
            ax.set_title(_plain(title))
        if series:
            fig.legend(loc="outside lower center", ncols=min(len(series), 3), frameon=False)
        return fig


def grouped_bars_svg(
    groups: Mapping[str, Sequence[float | None]], series: Sequence[str], *, title: str
) -> str:
    return _svg(grouped_bars_figure(groups, series, title=title))
