"""web/: the inline SVG charts and the one autoescaping, strict Jinja2 environment every page renders through."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import jinja2
import pytest
from markupsafe import Markup

from web import charts
from web.render import environment, render

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>&\''


def parse(svg: Markup) -> ET.Element:
    """The chart as XML: fails the test if the markup is not well-formed."""
    assert isinstance(svg, Markup)
    return ET.fromstring(str(svg))


def bars(root: ET.Element) -> list[ET.Element]:
    """The data bars (the legend's swatches carry no data-value)."""
    return [r for r in root.iter(f"{SVG}rect") if "data-value" in r.attrib]


def tooltips(root: ET.Element) -> list[str]:
    return [
        t.text or ""
        for el in root.iter()
        if el.tag in (f"{SVG}rect", f"{SVG}circle")
        for t in el.findall(f"{SVG}title")
    ]


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


CASES = [
    ("grouped", lambda: charts.bar_chart("分组", ["甲", "乙", "丙"], {"一": [1, 2, 3], "二": [4, 0, 6]})),
    ("stacked", lambda: charts.bar_chart("堆叠", ["甲", "乙"], {"一": [1, 2], "二": [3, 4]}, stacked=True)),
    ("horizontal", lambda: charts.bar_chart("横向", ["甲", "乙"], {"一": [1, 2]}, horizontal=True, unit="户")),
    ("negative", lambda: charts.bar_chart("负数", ["甲", "乙"], {"一": [-1.5, 2.25]})),
    ("many", lambda: charts.bar_chart("多", [f"很长的社区名称{i}" for i in range(30)], {"一": list(range(30))})),
    ("line", lambda: charts.line_chart("折线", [f"2024-01-{d:02d}" for d in range(1, 31)], {"一": list(range(30))})),
    ("gap", lambda: charts.line_chart("断线", ["a", "b", "c", "d"], {"一": [1, None, float("nan"), 2]})),
    ("empty", lambda: charts.bar_chart("空", [], {})),
]


@pytest.mark.parametrize(("name", "make"), CASES, ids=[c[0] for c in CASES])
def test_every_chart_is_well_formed_svg_with_a_title(name: str, make) -> None:
    root = parse(make())
    assert root.tag == f"{SVG}svg" and root.get("class") == "chart" and root.get("role") == "img"
    first = root[0]
    assert first.tag == f"{SVG}title" and first.text == root.get("aria-label") == root.get("data-chart")
    assert "script" not in str(make()).replace("&lt;script", "")  # no script element, ever
    assert make() == make()  # same input, same bytes: the published pages are hashed


def test_hostile_labels_are_text_not_markup() -> None:
    svg = charts.bar_chart(HOSTILE, [HOSTILE, "乙"], {HOSTILE: [1, 2], "二": [3, 4]}, stacked=True)
    raw = str(svg)
    assert "<script" not in raw and "&lt;script&gt;" in raw
    root = parse(svg)
    assert root[0].text == HOSTILE and root.get("aria-label") == HOSTILE
    assert HOSTILE in texts(root)  # the axis label and the legend hold the exact text
    assert f"{HOSTILE} · {HOSTILE}：1" in tooltips(root)
    line = charts.line_chart("t", [HOSTILE], {HOSTILE: [5]})
    assert "<script" not in str(line) and f"{HOSTILE} · {HOSTILE}：5" in tooltips(parse(line))


def test_control_characters_cannot_break_the_xml() -> None:
    svg = charts.bar_chart("标题\x0b", ["社区\x00甲", "乙"], {"一\x1f": [1, 2]})
    root = parse(svg)  # a raw \x00 or \x0b would make ElementTree's output unparseable
    assert root[0].text == "标题" and "社区甲" in texts(root)


def test_values_appear_in_tooltips_and_data_attributes() -> None:
    root = parse(charts.bar_chart("报警", ["一月", "二月"], {"纠纷": [12, 1234.5], "其他": [0, 7]}, unit="次"))
    assert tooltips(root) == ["一月 · 纠纷：12次", "一月 · 其他：0次", "二月 · 纠纷：1,234次", "二月 · 其他：7次"]
    assert [r.get("data-value") for r in bars(root)] == ["12", "0", "1,234", "7"]
    line = parse(charts.line_chart("率", ["a", "b"], {"误报率": [0.125, 0.5]}, unit="%"))
    assert tooltips(line) == ["a · 误报率：0.12%", "b · 误报率：0.5%"]


def test_missing_values_draw_nothing_and_break_the_line() -> None:
    root = parse(charts.bar_chart("缺", ["a", "b", "c"], {"一": [1, None, float("nan")]}))
    assert [r.get("data-value") for r in bars(root)] == ["1"]
    line = parse(charts.line_chart("缺", ["a", "b", "c", "d", "e"], {"一": [1, 2, None, 4, 5]}))
    assert len(list(line.iter(f"{SVG}polyline"))) == 2 and len(list(line.iter(f"{SVG}circle"))) == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda: charts.bar_chart("空", [], {}),
        lambda: charts.bar_chart("空", ["a"], {}),
        lambda: charts.bar_chart("空", [], {"一": []}, horizontal=True),
        lambda: charts.line_chart("空", [], {}),
        lambda: charts.line_chart("空", ["a", "b"], {"一": [None, None]}),
    ],
)
def test_empty_data_gives_the_no_data_chart(make) -> None:
    root = parse(make())
    assert charts.EMPTY_TEXT == "本期无数据" and charts.EMPTY_TEXT in texts(root)
    assert bars(root) == [] and list(root.iter(f"{SVG}polyline")) == []


def test_stacked_totals_and_geometry() -> None:
    data = {"红": [1, 0, 5], "橙": [2, 3, 0], "蓝": [4, 1, 5]}
    for horizontal in (False, True):
        root = parse(charts.bar_chart("堆叠", ["甲", "乙", "丙"], data, stacked=True, horizontal=horizontal))
        totals = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "total"]
        assert totals == ["7", "4", "10"]  # one total per bar, in label order
        rects = bars(root)
        assert len(rects) == 9
        size = "width" if horizontal else "height"
        lengths = [float(r.get(size)) for r in rects]
        per_label = [sum(lengths[i * 3 : i * 3 + 3]) for i in range(3)]
        scale = per_label[2] / 10  # px per warning, from the tallest stack
        assert per_label[0] == pytest.approx(7 * scale, abs=0.3) and per_label[1] == pytest.approx(4 * scale, abs=0.3)
        # the parts of a stack touch: each starts where the previous one ends
        first = rects[:3]
        if horizontal:
            ends = [float(r.get("x")) + float(r.get("width")) for r in first]
            assert [float(r.get("x")) for r in first[1:]] == pytest.approx(ends[:-1], abs=0.15)
        else:
            tops = [float(r.get("y")) for r in first]
            assert [float(r.get("y")) + float(r.get("height")) for r in first[1:]] == pytest.approx(tops[:-1], abs=0.15)


def test_gridlines_are_whole_numbers_for_counts() -> None:
    root = parse(charts.bar_chart("计数", ["a", "b"], {"一": [1, 3]}))
    grid = [t.text for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end" and t.get("fill") == "#666"]
    assert grid == ["0", "1", "2", "3"]
    root = parse(charts.bar_chart("计数", ["a"], {"一": [58]}))
    grid = [t.text for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end" and t.get("fill") == "#666"]
    assert grid == ["0", "20", "40", "60"]


def test_long_labels_are_shortened_with_the_full_text_kept() -> None:
    long = "科尔沁左翼中旗保康镇第一派出所" * 3
    root = parse(charts.bar_chart("长", [long, "短"], {"一": [1, 2]}, horizontal=True))
    shortened = [t for t in root.iter(f"{SVG}text") if (t.text or "").endswith("…")]
    assert len(shortened) == 1 and shortened[0].find(f"{SVG}title").text == long
    assert float(root.find(f".//{SVG}rect[@data-value]").get("x")) < 200  # the bars keep most of the width


def test_legend_wraps_instead_of_dropping_series() -> None:
    names = [f"第{i}个相当长的系列名称" for i in range(8)]
    root = parse(charts.bar_chart("图例", ["a"], {n: [1] for n in names}, width=400))
    legend = [t.text for t in root.iter(f"{SVG}text") if t.text in names]
    assert legend == names


def test_bad_input_raises_without_echoing_values() -> None:
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        charts.bar_chart("t", ["a", "b", "c"], {"一": [1, 2]})
    with pytest.raises(ValueError, match="1 values for 2 labels"):
        charts.line_chart("t", ["a", "b"], {"一": [1]})
    with pytest.raises(ValueError, match=">= 0"):
        charts.bar_chart("t", ["a"], {"一": [-1]}, stacked=True)
    with pytest.raises(ValueError) as err:
        charts.bar_chart("t", ["a"], {"一": ["13800000000x"]})
    assert "13800000000" not in str(err.value)


# --------------------------------------------------------------------- the Jinja2 environment


def test_render_escapes_and_charts_pass_through() -> None:
    env = environment()
    template = env.from_string("<p title='{{ v }}'>{{ v }}</p>{{ chart }}")
    out = template.render(v=HOSTILE, chart=charts.bar_chart("图", ["a"], {"一": [1]}))
    assert "<script" not in out and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&#39;" in out
    assert "<svg " in out  # Markup from web/charts.py is not escaped a second time


def test_render_of_a_file_template_escapes() -> None:
    context = {
        "title": HOSTILE,
        "date": "2024-05-01",
        "station_id": "S1",
        "station_name": HOSTILE,
        "county_name": "",
        "rules_banner": False,
        "provenance": [("代码版本", HOSTILE)],
        "totals": {"levels": [("red", 1)], "total": 1},
        "warnings": [],
    }
    page = render("ranking/station.html", **context)
    assert "<script" not in page and page.count("&lt;script&gt;") == 3  # title, heading, provenance


def test_strict_undefined_raises_on_a_missing_variable() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("ranking/station.html", title="t")
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string("{{ missing }}").render()


def test_url_part_filter_keeps_an_id_inside_its_path_segment() -> None:
    out = environment().from_string('<a href="stations/{{ s | url_part }}.html">').render(s='../x"#? 站')
    assert out == '<a href="stations/..%2Fx%22%23%3F%20%E7%AB%99.html">'
