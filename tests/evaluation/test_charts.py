"""The run page's charts: server-side matplotlib SVG."""

from __future__ import annotations

import re

import matplotlib

from evaluation import charts


def rows(values: dict[str, float]) -> list[dict]:
    return [{"name": name, "recall@1": value} for name, value in values.items()]


def test_charts_use_the_agg_backend():
    assert matplotlib.get_backend().lower() == "agg"


def test_svg_is_inline_ready_and_the_same_for_the_same_data():
    svg = charts.recall_curve_svg({"image → image": {1: 0.5, 5: 0.8, 10: 0.9}})
    assert svg.startswith("<svg")
    assert "<?xml" not in svg
    assert "DOCTYPE" not in svg
    assert svg == charts.recall_curve_svg({"image → image": {1: 0.5, 5: 0.8, 10: 0.9}})


def test_recall_curve_names_its_series():
    svg = charts.recall_curve_svg(
        {"image → image": {1: 0.5, 5: 0.8}, "text → image": {1: 0.2, 5: None}}
    )
    assert "image → image" in svg
    assert "text → image" in svg
    assert "Recall@k" in svg


def test_per_class_bars_put_the_worst_class_first():
    svg = charts.per_class_bars_svg(
        rows({"lemon": 0.9, "reel": 0.1, "alsatian": 0.5}), "recall@1", title="per class"
    )
    positions = [svg.index(f">{name}<") for name in ("reel", "alsatian", "lemon")]
    assert positions == sorted(positions)
    assert "mean 0.500" in svg


def test_many_classes_name_the_worst_and_the_best():
    # class n has recall n / 200: the worst ten are 000..009, the best ten 190..199
    many = {f"class {n:03d}": n / 200 for n in range(200)}
    svg = charts.per_class_bars_svg(rows(many), "recall@1", title="per class")
    shown = {f"class {n:03d}" for n in [*range(10), *range(190, 200)]}
    for name in shown:
        assert f">{name}<" in svg
    for n in range(10, 190):
        assert f"class {n:03d}" not in svg
    assert "180 classes in between" in svg
    assert "the 10 worst and 10 best of 200 classes" in svg
    assert svg.index(">class 000<") < svg.index(">class 009<") < svg.index(">class 190<")
    assert len(re.findall(r'<g id="patch_\d+"', svg)) < 40  # 20 bars, not 200


def test_a_few_classes_are_all_named_with_their_values():
    svg = charts.per_class_bars_svg(
        rows({"lemon": 1.0, "reel": 0.0, "alsatian": 0.25}), "recall@1", title="per class"
    )
    for text in (">lemon<", ">reel<", ">alsatian<", ">1.00<", ">0.00<", ">0.25<"):
        assert text in svg
    assert "3 classes, worst first" in svg
    assert "Recall@1; dashed: mean 0.417" in svg  # (1 + 0 + 0.25) / 3


def test_one_class_is_one_class():
    svg = charts.per_class_bars_svg(
        [{"name": "lemon", "top1_accuracy": 0.5}], "top1_accuracy", title="t"
    )
    assert "top-1 accuracy; dashed: mean 0.500" in svg
    assert "1 class" in svg
    assert "1 classes" not in svg


def test_a_long_class_name_is_cut_short():
    long_name = "academic gown, academic robe, judge's robe"
    svg = charts.per_class_bars_svg(rows({long_name: 0.5}), "recall@1", title="t")
    assert "academic gown, academic robe,…" in svg
    assert long_name not in svg


def _extents(fig):
    """Display-space boxes, measured by matplotlib's own renderer after a full draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def test_the_recall_legend_stays_off_the_plotted_lines():
    # high recall everywhere: the old legend in the lower right sat on the lines' area
    fig = charts.recall_curve_figure(
        {"image → image": {1: 0.2, 5: 0.95, 10: 1.0}, "text → image": {1: 0.05, 5: 0.5, 10: 0.9}}
    )
    renderer = _extents(fig)
    (ax,) = fig.axes
    legends = fig.legends + ([ax.get_legend()] if ax.get_legend() else [])
    assert len(legends) == 1
    legend_box = legends[0].get_window_extent(renderer)
    assert not legend_box.overlaps(ax.get_window_extent(renderer))  # outside the plot area
    for line in ax.get_lines():
        points = line.get_transform().transform(line.get_xydata())
        assert not any(legend_box.contains(x, y) for x, y in points)
    texts = [t.get_text() for t in legends[0].get_texts()]
    assert texts == ["image → image", "text → image"]
    assert ax.get_xlabel() == "k: how many results are looked at"
    assert ax.get_ylabel() == "Recall@k"
    assert ax.get_title(loc="left") == "Queries with a right-class image in the top k"


def test_chart_text_stays_readable_on_a_phone():
    """Shrunk to a 340 px wide card (a 390 px phone), the smallest text is still >= 9 px."""
    figures = [
        charts.recall_curve_figure({"image → image": {1: 0.5, 5: 0.8}}),
        charts.per_class_bars_figure(rows({"lemon": 1.0, "reel": 0.0}), "recall@1", title="t"),
        charts.rag_bars_figure({"retrieved": 0.75, "none": 0.25}, 0.875),
    ]
    for fig in figures:
        renderer = _extents(fig)
        width_px = fig.get_tightbbox(renderer).width / fig.dpi * 96  # CSS px at natural size
        scale = min(1.0, 340 / width_px)
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
        assert min(sizes) * 96 / 72 * scale >= 9, (min(sizes), width_px)


def test_a_dollar_in_a_class_name_is_shown_as_typed():
    svg = charts.per_class_bars_svg(rows({"$5 bill": 0.5, "$1 bill": 0.2}), "recall@1", title="t")
    assert "$5 bill" in svg


def test_rag_bars_show_both_contexts_and_the_context_hit_rate():
    svg = charts.rag_bars_svg({"retrieved": 0.75, "none": 0.25}, 0.875)
    for text in ("LIR (retrieved)", "LIR (none)", "context hit rate", "0.750", "0.250", "0.875"):
        assert text in svg


def test_run_charts_draw_only_what_the_run_measured():
    metrics = {"image": {"recall@1": 1.0, "recall@5": 1.0}}
    per_class = {"image": [{"wnid": "n1", "name": "lemon", "recall@1": 1.0}]}
    assert set(charts.run_charts(metrics, per_class, [1, 5])) == {"recall_curve", "image_per_class"}
    assert charts.run_charts({}, {}, [1, 5]) == {}
