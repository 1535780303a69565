"""pipelines/outputs.py: the files of one date's ranking and their atomic publication."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import os
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import outputs
from pipelines.outputs import discard, publish, published, render_center_page, render_station_page, stage_outputs

DATE = "2024-05-01"
XSS = "<script>alert(1)</script>"
SVG = "{http://www.w3.org/2000/svg}"
MANIFEST = {"engine": "model", "model_version": "7", "data_fingerprint": "fp-abc", "code_version": "deadbeef0000"}

# station -> (name, county code, county name, levels of its warnings in rank order)
STATIONS = {
    "S001": ("明仁派出所", "150502", "科尔沁区", ["red", "orange", "orange", "yellow", "blue"]),
    "S002": ("西门派出所", "150502", "科尔沁区", ["orange", "yellow", "blue", "blue"]),
    "S003": ("保康派出所", "150521", "科左中旗", []),
}
CATS = ["debt", "family", "neighbor", "land", "labor", "medical_school", "property", "other", None]


def make_ranking(engine: str = "model") -> pd.DataFrame:
    """30 households over 3 stations and 2 counties; 9 warned; input rows deliberately out of order."""
    rows = []
    n = 0
    for station, (name, ccode, cname, levels) in STATIONS.items():
        for i in range(10):
            n += 1
            level = levels[i] if i < len(levels) else None
            prob = math.nan if engine == "rules" else round(0.9 - 0.02 * n, 4)
            rows.append(
                {
                    "date": DATE,
                    "household_id": f"H{n:08d}",
                    "address_id": f"A{n:08d}",
                    "station_id": station,
                    "station_name": name,
                    "county_code": ccode,
                    "county_name": cname,
                    "community": XSS if n == 2 else f"幸福{n % 4}小区",
                    "in_scope": n % 3 != 0,
                    "probability": prob,
                    "score": math.nan if engine == "rules" else round(0.5 - 0.01 * n, 4),
                    "level": level,
                    "raised_by": None if level is None else ("rules" if engine == "rules" or n % 2 else "model"),
                    "threshold_level": "red" if (station, i) == ("S001", 1) else level,
                    "model_level": None if engine == "rules" or n % 2 else level,
                    "rank_in_station": i + 1 if level else 0,
                    "category": CATS[n % len(CATS)],
                    "rules_points": float(40 - n) + 0.5 * (n % 2),
                    "rules_level": level if n % 2 else None,
                    "rules_scenario": "family" if n % 2 else None,
                    "rules_reasons": ["[涉家庭纠纷警情积分预警]", f"近30天报警{n % 5}次"] if n % 2 else [],
                    "model_reasons": [] if engine == "rules" else [f"近90天纠纷报警{n % 7}次", "出现持械表述"],
                    "matched_terms": ["打人", "=HYPERLINK(1)"] if n == 3 else ["吵架"],
                    "recent_calls": [f"2024-04-2{n % 9} 婚姻家庭纠纷：动手/殴打；否定：持械"] if level else [],
                    "calls_90d": n % 6,
                    "disputes_90d": n % 4,
                    "last_call_date": "2024-04-28" if n % 5 else None,
                    "engine": engine,
                    "model_version": None if engine == "rules" else "7",
                }
            )
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.fixture
def ranking() -> pd.DataFrame:
    return make_ranking()


def stage_and_publish(ranking: pd.DataFrame, root: Path, manifest: dict | None = None) -> Path:
    staged = stage_outputs(ranking, root, DATE, manifest or MANIFEST, {"features": pd.DataFrame({"x": [1, 2]})})
    return publish(staged)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def warned_ids(ranking: pd.DataFrame) -> list[str]:
    w = ranking[ranking["level"].notna()].sort_values(["station_id", "rank_in_station"])
    return w["household_id"].tolist()


def test_csv_is_excel_utf8_with_bom_and_only_warned_rows(ranking: pd.DataFrame, tmp_path: Path) -> None:
    path = outputs.write_csv(ranking, tmp_path / "w.csv")
    raw = path.read_bytes()
    assert raw[:3] == b"\xef\xbb\xbf"
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    for header in ("日期", "户编号", "地址编号", "派出所", "派出所名称", "旗县区", "社区/村", "预警等级", "风险概率"):
        assert header in rows[0]
    for header in ("站内排名", "纠纷类别", "模型因素", "积分预警", "积分", "匹配词", "近90天报警", "最近报警日期"):
        assert header in rows[0]
    assert [r["户编号"] for r in rows] == warned_ids(ranking)
    first = rows[0]  # S001 rank 1: household 1
    assert first["预警等级"] == "红色预警" and first["站内排名"] == "1"
    assert first["风险概率"] == "88.0%"
    assert first["模型因素"] == "近90天纠纷报警1次；出现持械表述"
    assert first["积分场景"] == "涉家庭纠纷警情积分预警"
    assert rows[1]["阈值等级"] == "红色预警" and rows[1]["预警等级"] == "橙色预警"
    assert {r["纠纷类别"] for r in rows} <= {*outputs.CATEGORY_NAMES.values(), ""}
    third = next(r for r in rows if r["户编号"] == "H00000003")
    assert third["匹配词"] == "打人；=HYPERLINK(1)"  # inside the cell, not at its start: harmless
    assert not any(v.startswith("=") for r in rows for v in r.values())


def test_csv_guards_formula_cells(ranking: pd.DataFrame, tmp_path: Path) -> None:
    ranking.loc[ranking["household_id"] == "H00000001", "community"] = "=cmd|' /C calc'!A0"
    rows = list(csv.DictReader(io.StringIO(outputs.write_csv(ranking, tmp_path / "w.csv").read_text("utf-8-sig"))))
    assert rows[0]["社区/村"] == "'=cmd|' /C calc'!A0"


def test_staged_files_parquet_pages_and_manifest(ranking: pd.DataFrame, tmp_path: Path) -> None:
    final = stage_and_publish(ranking, tmp_path)
    folder = published(tmp_path, DATE)
    assert final == tmp_path / DATE and folder is not None and folder.name.startswith(f".{DATE}-")
    assert sorted(tree(folder)) == [
        "features.parquet",
        "index.html",
        "manifest.json",
        "ranking.parquet",
        "stations/S001.html",
        "stations/S002.html",
        "warnings.csv",
        "warnings.xlsx",
    ]

    back = pq.read_table(folder / "ranking.parquet").to_pandas()
    assert list(back.columns) == list(outputs.REQUIRED_COLUMNS)
    assert sorted(back["household_id"]) == sorted(ranking["household_id"])
    merged = back.merge(ranking, on="household_id", suffixes=("", "_in"))
    assert len(merged) == len(ranking)
    for col in ("level", "station_id", "community", "last_call_date"):
        a, b = merged[col].astype(object), merged[f"{col}_in"].astype(object)
        assert all((pd.isna(x) and pd.isna(y)) or x == y for x, y in zip(a, b, strict=True)), col
    assert (merged["rank_in_station"] == merged["rank_in_station_in"]).all()
    assert [list(v) for v in merged["matched_terms"]] == list(merged["matched_terms_in"])
    assert pq.read_schema(folder / "ranking.parquet").field("rules_reasons").type.value_type == "string"

    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    assert manifest["data_fingerprint"] == "fp-abc" and manifest["date"] == DATE
    assert manifest["counts"]["warnings"] == 9 and manifest["counts"]["by_level"]["blue"] == 3
    for name, meta in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert meta == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    listing = {"date": DATE, "files": {k: v["sha256"] for k, v in manifest["files"].items()}}
    expected_id = hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
    assert manifest["ranking_id"] == expected_id  # what the warnings database stores with the rows
    assert pd.read_parquet(folder / "features.parquet")["x"].tolist() == [1, 2]


def test_station_pages_hold_their_warnings_in_rank_order(ranking: pd.DataFrame, tmp_path: Path) -> None:
    stage_and_publish(ranking, tmp_path)
    folder = published(tmp_path, DATE)
    assert folder is not None
    page = (folder / "stations" / "S001.html").read_text("utf-8")
    positions = [page.index(h) for h in ["H00000001", "H00000002", "H00000003", "H00000004", "H00000005"]]
    assert positions == sorted(positions)
    assert "H00000006" not in page and "H00000011" not in page  # unwarned and other station
    assert 'href="../index.html"' in page and '<html lang="zh-CN">' in page and '<meta charset="utf-8">' in page
    assert "近90天纠纷报警1次" in page and "涉家庭纠纷警情积分预警" in page and "按警力容量调整" in page
    assert page == render_station_page(ranking, "S001", {**MANIFEST, "date": DATE})

    center = (folder / "index.html").read_text("utf-8")
    assert "预警日报 2024-05-01" in center and "fp-abc" in center and "deadbeef0000" in center
    assert 'href="stations/S001.html"' in center and 'href="stations/S002.html"' in center
    assert "stations/S003.html" not in center and "无预警" in center
    assert "科尔沁区" in center and "科左中旗" in center and "经济债务" in center
    assert "降级：规则引擎" not in center
    assert center == render_center_page(ranking, {**MANIFEST, "date": DATE})


def test_values_are_escaped(ranking: pd.DataFrame) -> None:
    for page in (render_center_page(ranking, MANIFEST), render_station_page(ranking, "S001", MANIFEST)):
        assert XSS not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script" not in page


class _Tags(HTMLParser):
    """Every start tag of a page with its attributes (what a browser would fetch or run)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def charts_of(page: str) -> dict[str, ET.Element]:
    """The page's inline SVG charts by title, each parsed as XML (fails if one is not well-formed)."""
    found = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    parsed = [ET.fromstring(svg) for svg in found]
    return {root.get("data-chart"): root for root in parsed}


def hostile_ranking() -> pd.DataFrame:
    """The fixture with a household id, a reason, a recent call, a matched term and a station name that are markup."""
    ranking = make_ranking()
    first = ranking["household_id"] == "H00000001"
    ranking.loc[first, "household_id"] = HOSTILE_ID
    ranking.loc[first, "address_id"] = "A\"1'<b>"
    ranking.loc[first, "model_reasons"] = pd.Series([[HOSTILE_REASON]], index=ranking.index[first])
    ranking.loc[first, "rules_reasons"] = pd.Series([[HOSTILE_REASON]], index=ranking.index[first])  # raised by rules
    ranking.loc[first, "recent_calls"] = pd.Series([["<img src=x onerror=alert(2)>"]], index=ranking.index[first])
    ranking.loc[ranking["station_id"] == "S001", "station_name"] = '明仁"><script>alert(3)</script>'
    ranking.loc[ranking["county_code"] == "150521", "county_name"] = "<b>科左中旗</b>"
    return ranking


HOSTILE_ID = '<script>alert("id")</script>'
HOSTILE_REASON = "近期'报警'<script>x</script>"


def test_hostile_values_show_as_text_on_both_pages() -> None:
    ranking = hostile_ranking()
    center = render_center_page(ranking, {**MANIFEST, "code_version": "<i>v</i>"})
    station = render_station_page(ranking, "S001", MANIFEST)
    for page in (center, station):
        assert "<script" not in page and "<img" not in page and "<b>" not in page and "<i>" not in page
        assert [t for t, _ in tags(page) if t in ("script", "img", "b", "i", "iframe")] == []
        assert "&lt;script&gt;alert(&#34;id&#34;)&lt;/script&gt;" in page  # the household id, as text
        assert html.unescape(page).count(HOSTILE_ID) >= 1
    assert "&lt;b&gt;科左中旗&lt;/b&gt;" in center  # county tables and the chart's labels
    assert "近期&#39;报警&#39;&lt;script&gt;x&lt;/script&gt;" in center  # the top-50 list's reasons
    assert "近期&#39;报警&#39;&lt;script&gt;x&lt;/script&gt;" in station
    assert "&lt;img src=x onerror=alert(2)&gt;" in station and "A&#34;1&#39;&lt;b&gt;" in station
    assert "明仁&#34;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in station
    svg_labels = [t.text for root in charts_of(center).values() for t in root.iter(f"{SVG}text")]
    assert "<b>科左中旗</b>" in svg_labels  # the chart holds the exact text, escaped by ElementTree


def test_pages_are_self_contained_and_link_relatively(ranking: pd.DataFrame) -> None:
    ranking.loc[ranking["station_id"] == "S002", "station_id"] = "西门 #2/?"  # rendered directly: any id
    center = render_center_page(ranking, MANIFEST)
    station = render_station_page(ranking, "S001", MANIFEST)
    for page in (center, station):
        found = tags(page)
        assert not [t for t, _ in found if t in ("script", "link", "iframe", "img", "object", "embed")]
        assert not [a for _, a in found if "src" in a or any(k.startswith("on") for k in a)]
        assert "url(" not in page and "@import" not in page and "<style>" in page
        hrefs = [a["href"] for t, a in found if t == "a"]
        assert hrefs and all(h and "://" not in h and not h.startswith(("/", "javascript:")) for h in hrefs)
    center_links = [a["href"] for t, a in tags(center) if t == "a"]
    assert "stations/%E8%A5%BF%E9%97%A8%20%232%2F%3F.html" in center_links  # one path segment, percent-encoded
    assert set(center_links) == {"stations/S001.html", "stations/%E8%A5%BF%E9%97%A8%20%232%2F%3F.html"}
    assert [a["href"] for t, a in tags(station) if t == "a"] == ["../index.html"]  # back to the index, and only that


def test_city_page_charts_match_its_tables(ranking: pd.DataFrame) -> None:
    center = render_center_page(ranking, MANIFEST)
    found = charts_of(center)
    assert list(found) == ["各旗县区预警（按等级）", "各纠纷类别预警（按等级）", "预警来源：积分规则 / 模型（按等级）"]
    for root in found.values():
        assert root.get("class") == "chart" and root.find(f"{SVG}title") is not None

    def totals(root: ET.Element) -> list[str]:
        return [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "total"]

    by_county, by_category, by_source = found.values()
    assert totals(by_county) == ["9", "0"]  # 科尔沁区 has both warned stations, 科左中旗 none
    red = [
        r.find(f"{SVG}title").text
        for r in by_county.iter(f"{SVG}rect")
        if r.get("fill") == "#d62728" and "data-value" in r.attrib
    ]
    assert red == ["科尔沁区 · 红色预警：1", "科左中旗 · 红色预警：0"]
    assert sum(int(t) for t in totals(by_category)) == 9
    assert totals(by_source) == ["5", "4", "0"]  # rules, model, both: the fixture raises odd households by rules
    # the same numbers as the county table
    table = center[center.index('<table id="by-county">') :]
    assert re.search(r"科尔沁区（150502）</td>(<td class=\"n\">\d+</td>){4}<td class=\"n\">9</td>", table)


def test_county_without_code_and_shared_names(ranking: pd.DataFrame) -> None:
    ranking.loc[ranking["station_id"] == "S002", "county_code"] = None  # same name 科尔沁区, no code
    center = render_center_page(ranking, MANIFEST)
    table = center[center.index('<table id="by-county">') : center.index('<table id="by-category">')]
    assert re.search(r"<td>科尔沁区（150502）</td>(<td class=\"n\">\d+</td>){4}<td class=\"n\">5</td>", table)
    assert re.search(r"<td>科尔沁区</td>(<td class=\"n\">\d+</td>){4}<td class=\"n\">4</td>", table)
    assert table.index("科左中旗") < table.index("<td>科尔沁区</td>")  # the row without a code comes last
    chart = charts_of(center)["各旗县区预警（按等级）"]
    tips = [
        r.find(f"{SVG}title").text
        for r in chart.iter(f"{SVG}rect")
        if r.get("fill") == "#d62728" and r.find(f"{SVG}title") is not None
    ]
    assert tips == ["科尔沁区（150502） · 红色预警：1", "科左中旗 · 红色预警：0", "科尔沁区 · 红色预警：0"]


def test_a_ranking_without_warnings_shows_empty_charts(ranking: pd.DataFrame) -> None:
    ranking["level"] = None
    ranking["raised_by"] = None
    center = render_center_page(ranking, MANIFEST)
    assert "全市前50条预警</h2>\n<p>无预警</p>" in center
    assert len(charts_of(center)) == 3 and center.count("本期无数据") == 3
    assert 'href="stations/' not in center
    station = render_station_page(ranking, "S001", MANIFEST)
    assert "<p>无预警</p>" in station and '<table id="warnings">' not in station


def test_pages_are_byte_identical_for_the_same_ranking(ranking: pd.DataFrame) -> None:
    shuffled = ranking.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert render_center_page(ranking, MANIFEST) == render_center_page(shuffled, MANIFEST)
    assert render_station_page(ranking, "S002", MANIFEST) == render_station_page(shuffled, "S002", MANIFEST)


def test_station_page_rows_show_both_sides(ranking: pd.DataFrame) -> None:
    page = render_station_page(ranking, "S001", MANIFEST)
    rows = page[page.index('<table id="warnings">') :].split("<tr data-level=")[1:]
    assert [r.split(">", 1)[0] for r in rows] == ['"red"', '"orange"', '"orange"', '"yellow"', '"blue"']
    first, second = rows[0], rows[1]
    assert "来源：积分规则" in first and "88.0%" in first and "H00000001<br>A00000001" in first
    assert "<li>近90天纠纷报警1次</li><li>出现持械表述</li>" in first and "积分 39.5" in first
    assert "模型未预警" in first and "涉家庭纠纷警情积分预警" in first  # odd rows: raised by rules, not the model
    assert "近90天报警 1 次，其中纠纷 1 次<br>最近 2024-04-28" in first
    assert "<li>2024-04-21 婚姻家庭纠纷：动手/殴打；否定：持械</li>" in first
    assert "阈值：红色预警（按警力容量调整）" in second and "未达积分预警" in second
    assert "打人；=HYPERLINK(1)" in rows[2]


def test_rules_engine_banner(tmp_path: Path) -> None:
    ranking = make_ranking("rules")
    manifest = {**MANIFEST, "engine": "rules", "model_version": None}
    stage_and_publish(ranking, tmp_path, manifest)
    folder = published(tmp_path, DATE)
    assert folder is not None
    for page in ("index.html", "stations/S001.html", "stations/S002.html"):
        assert "降级：规则引擎" in (folder / page).read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO((folder / "warnings.csv").read_text("utf-8-sig"))))
    assert {r["风险概率"] for r in rows} == {""} and {r["引擎"] for r in rows} == {"rules"}


def test_publishing_twice_is_identical_and_swaps_the_symlink(ranking: pd.DataFrame, tmp_path: Path) -> None:
    stage_and_publish(ranking, tmp_path)
    first = published(tmp_path, DATE)
    assert first is not None
    files = tree(first)

    shuffled = ranking.sample(frac=1.0, random_state=11)  # same rows, another order: same bytes
    stage_and_publish(shuffled, tmp_path)
    second = published(tmp_path, DATE)
    assert second is not None and second != first
    assert (tmp_path / DATE).is_symlink() and os.readlink(tmp_path / DATE) == second.name
    assert tree(second) == files
    assert not first.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == sorted([DATE, second.name])


def test_failed_staging_leaves_the_previous_publication(
    ranking: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage_and_publish(ranking, tmp_path)
    before = published(tmp_path, DATE)
    assert before is not None
    files = tree(before)
    entries = sorted(os.listdir(tmp_path))

    def boom(*args: object, **kwargs: object) -> str:
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(outputs, "station_html", boom)  # the renderer stage_outputs uses
    with pytest.raises(RuntimeError, match="renderer failed"):
        stage_outputs(ranking, tmp_path, DATE, MANIFEST)
    assert published(tmp_path, DATE) == before and tree(before) == files
    assert sorted(os.listdir(tmp_path)) == entries  # no visible nor hidden leftover


def test_discard_and_stale_leftovers(ranking: pd.DataFrame, tmp_path: Path) -> None:
    staged = stage_outputs(ranking, tmp_path, DATE, MANIFEST)
    discard(staged)
    assert not staged.path.exists() and published(tmp_path, DATE) is None

    host = outputs._host()
    crashed = tmp_path / f".{DATE}-{1:020d}-{host}-{2**22 + 7}-abcd1234"  # an old run of a process that is gone
    crashed.mkdir()
    other_date = tmp_path / f".2024-05-02-{1:020d}-{host}-{2**22 + 7}-abcd1234"
    other_date.mkdir()
    final = publish(stage_outputs(ranking, tmp_path, DATE, MANIFEST))
    assert not crashed.exists() and other_date.exists()
    discard(outputs.Staged(DATE, final.resolve(), final))  # discarding the published folder is a no-op
    assert published(tmp_path, DATE) == final.resolve()


def test_legacy_directory_is_replaced(ranking: pd.DataFrame, tmp_path: Path) -> None:
    legacy = tmp_path / DATE
    legacy.mkdir()
    (legacy / "old.txt").write_text("old")
    assert published(tmp_path, DATE) == legacy
    stage_and_publish(ranking, tmp_path)
    assert (tmp_path / DATE).is_symlink()
    folder = published(tmp_path, DATE)
    assert folder is not None and not (folder / "old.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()] == [folder.name]


def test_published_unknown_date_and_bad_input(ranking: pd.DataFrame, tmp_path: Path) -> None:
    assert published(tmp_path, "2023-01-01") is None
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        published(tmp_path, "../etc")
    with pytest.raises(ValueError) as err:
        stage_outputs(ranking.drop(columns=["community", "level"]), tmp_path, DATE, MANIFEST)
    assert "community" in str(err.value) and "level" in str(err.value)
    bad = ranking.copy()
    bad.loc[0, "level"] = "紫色" + XSS
    with pytest.raises(ValueError) as err:
        stage_outputs(bad, tmp_path, DATE, MANIFEST)
    assert "level" in str(err.value) and "紫色" not in str(err.value)
    with pytest.raises(ValueError, match="date"):
        stage_outputs(ranking, tmp_path, "2024-05-02", MANIFEST)
    twice = ranking.copy()
    twice.loc[5, "household_id"] = twice.loc[17, "household_id"]  # in another station: not side by side
    with pytest.raises(ValueError, match="household_id must be unique"):
        stage_outputs(twice, tmp_path, DATE, MANIFEST)
    assert list(tmp_path.iterdir()) == []


def test_canonical_order_is_station_then_rank_then_id(ranking: pd.DataFrame) -> None:
    """The lexsort of ranks equals Python's sort of (station, unwarned, rank, id) as strings compare."""
    from pipelines.ranking_columns import CanonicalRanking

    ranking = ranking.copy()
    ranking.loc[ranking.index[:4], "station_id"] = ["S001", "Sé", "S00", "S001"]  # non-ASCII and prefix ids
    ranking.loc[ranking.index[:3], "household_id"] = ["H9", "Hé", "H"]
    warned = ranking["level"].notna().tolist()
    rows = ranking.to_dict("records")
    key = [
        (r["station_id"], not w, r["rank_in_station"] if w else 0, r["household_id"])
        for r, w in zip(rows, warned, strict=True)
    ]
    want = sorted(range(len(rows)), key=key.__getitem__)
    assert CanonicalRanking(ranking).order.tolist() == want


def test_staging_is_invisible_until_published(ranking: pd.DataFrame, tmp_path: Path) -> None:
    stage_and_publish(ranking, tmp_path)
    before = published(tmp_path, DATE)
    staged = stage_outputs(ranking.head(20), tmp_path, DATE, MANIFEST)
    assert staged.path.name.startswith(".") and published(tmp_path, DATE) == before
    assert publish(staged) == tmp_path / DATE and published(tmp_path, DATE) == staged.path.resolve()


def test_unwritable_extra_table_fails_without_values(ranking: pd.DataFrame, tmp_path: Path) -> None:
    secret = "张三13800000000"
    bad = pd.DataFrame({"x": [1, secret]})  # mixed types: Arrow's own message would quote the value
    with pytest.raises(ValueError) as err:
        stage_outputs(ranking, tmp_path, DATE, MANIFEST, {"calls": bad})
    assert "calls" in str(err.value) and secret not in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_relative_out_root(ranking: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    legacy = tmp_path / "out" / DATE
    legacy.mkdir(parents=True)
    for _ in range(2):
        assert publish(stage_outputs(ranking, Path("out"), DATE, MANIFEST)) == Path("out") / DATE
    dirs = [p for p in (tmp_path / "out").iterdir() if p.is_dir() and not p.is_symlink()]
    assert dirs == [published(Path("out"), DATE)]


# --------------------------------------------------------------------- the Excel workbook


def read_xlsx(path: Path) -> list[list[tuple[str, str]]]:
    """Rows of the first sheet as (cell type, text) pairs, read from the XML inside the zip (no openpyxl here).

    The type is ``s`` for a text cell (shared string) and ``n`` for a number: what Excel will show.
    """
    ns = {"x": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as book:
        shared = [
            "".join(t.text or "" for t in si.iter(f"{{{ns['x']}}}t"))
            for si in ET.fromstring(book.read("xl/sharedStrings.xml")).findall("x:si", ns)
        ]
        sheet = ET.fromstring(book.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.find("x:sheetData", ns).findall("x:row", ns):
        cells: list[tuple[str, str]] = []
        for cell in row.findall("x:c", ns):
            column = "".join(ch for ch in cell.get("r", "") if ch.isalpha())
            index = 0
            for ch in column:
                index = index * 26 + ord(ch) - 64
            cells.extend([("", "")] * (index - 1 - len(cells)))  # empty cells are not stored
            value = cell.find("x:v", ns)
            if cell.get("t") == "s":
                cells.append(("s", shared[int(value.text)]))
            else:
                cells.append(("n", value.text if value is not None else ""))
        rows.append(cells)
    return rows


def test_xlsx_keeps_digit_only_ids_as_text(ranking: pd.DataFrame, tmp_path: Path) -> None:
    """Excel turns 00000001 into 1 and 18-digit ids into 1.505e+17 from a CSV; the workbook stores them as text."""
    ids = {old: f"{i + 1:08d}" for i, old in enumerate(sorted(ranking["household_id"]))}
    ids["H00000002"], ids["H00000003"] = "150502000012345601", "150502000012345602"  # equal as doubles
    ranking["household_id"] = ranking["household_id"].map(ids)
    ranking["address_id"] = ["0" + a[1:] for a in ranking["address_id"]]
    ranking["station_id"] = ranking["station_id"].str.replace("S", "0")  # 0001, 0002: digit-only too
    ranking.loc[ranking["household_id"] == "00000001", "community"] = "=1+1"
    path = outputs.write_xlsx(ranking, tmp_path / "w.xlsx", DATE)
    rows = read_xlsx(path)
    headers = [text for _, text in rows[0]]
    assert headers == list(outputs.CSV_COLUMNS)  # the CSV's Chinese headers, in its order

    csv_rows = list(csv.DictReader(io.StringIO(outputs.write_csv(ranking, tmp_path / "w.csv").read_text("utf-8-sig"))))
    assert len(rows) - 1 == len(csv_rows) == 9
    col = {h: i for i, h in enumerate(headers)}
    by_id = {r[col["户编号"]][1]: r for r in rows[1:]}
    assert by_id["00000001"][col["户编号"]] == ("s", "00000001")  # a text cell: the zeros stay
    assert by_id["150502000012345601"][col["户编号"]] == ("s", "150502000012345601")
    assert by_id["150502000012345602"][col["户编号"]] == ("s", "150502000012345602")
    for header in ("日期", "地址编号", "派出所", "旗县区代码", "最近报警日期", "预警等级", "模型因素"):
        assert {cell[0] for row in rows[1:] for cell in [row[col[header]]] if cell[1]} == {"s"}, header
    assert by_id["00000001"][col["派出所"]] == ("s", "0001") and by_id["00000001"][col["旗县区代码"]] == ("s", "150502")
    assert by_id["00000001"][col["社区/村"]] == ("s", "=1+1")  # a text cell is never run as a formula
    for row, csv_row in zip(rows[1:], csv_rows, strict=True):  # same rows, same order, same text as the CSV
        assert row[col["户编号"]][1] == csv_row["户编号"]
        assert row[col["站内排名"]] == ("n", csv_row["站内排名"])  # numbers stay numbers
        assert float(row[col["风险概率"]][1]) == pytest.approx(float(csv_row["风险概率"].rstrip("%")) / 100, abs=5e-4)
        assert row[col["积分因素"]][1] == csv_row["积分因素"] and row[col["预警等级"]][1] == csv_row["预警等级"]


def test_xlsx_is_byte_identical_on_a_rerun(ranking: pd.DataFrame, tmp_path: Path) -> None:
    first = outputs.write_xlsx(ranking, tmp_path / "a.xlsx", DATE).read_bytes()
    again = outputs.write_xlsx(ranking.sample(frac=1.0, random_state=5), tmp_path / "b.xlsx", DATE).read_bytes()
    assert first == again


# --------------------------------------------------------------------- leftovers of killed runs


def test_sweep_removes_only_dead_runs_leftovers(ranking: pd.DataFrame, tmp_path: Path) -> None:
    live = stage_and_publish(ranking, tmp_path)
    shown = published(tmp_path, DATE)
    host = outputs._host()
    dead = tmp_path / f".2024-05-02-{1:020d}-{host}-999999999-abcd1234"  # a killed run's staging, pid gone
    dead.mkdir()
    link = tmp_path / f".2024-05-02-{2:020d}-{host}-999999999-link"  # a killed publish's temporary link
    link.symlink_to(shown.name)
    alive = tmp_path / f".2024-05-03-{3:020d}-{host}-{os.getpid()}-abcd1234"  # a run still writing
    alive.mkdir()
    other = tmp_path / f".2024-05-03-{4:020d}-00000000-999999999-abcd1234"  # another host's: not ours to judge
    other.mkdir()
    # a killed cluster run's parts folder (whichever way the next run ranks), not a live one's or another host's
    parts = outputs.new_parts_folder(tmp_path)
    (parts / "ranking.arrow").write_bytes(b"rows")
    dead_parts = tmp_path / f"{outputs.PARTS_PREFIX}{5:020d}-{host}-999999999"
    (dead_parts / "city=1505").mkdir(parents=True)
    other_parts = tmp_path / f"{outputs.PARTS_PREFIX}{6:020d}-00000000-999999999"
    other_parts.mkdir()
    assert sorted(outputs.sweep(tmp_path)) == sorted([dead.name, link.name, dead_parts.name])
    assert published(tmp_path, DATE) == shown and live.is_symlink()
    assert alive.is_dir() and other.is_dir() and not dead.exists() and not link.is_symlink()
    assert parts.is_dir() and other_parts.is_dir() and not dead_parts.exists()
    assert outputs.sweep(tmp_path / "missing") == []
