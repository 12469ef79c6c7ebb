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


def test_many_classes_go_unlabelled():
    many = {f"class {n:03d}": n / 200 for n in range(200)}
    svg = charts.per_class_bars_svg(rows(many), "recall@1", title="per class")
    assert "200 classes, worst first" in svg
    assert "class 007" not in svg
    assert len(re.findall(r'<g id="patch_\d+"', svg)) >= 200


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
