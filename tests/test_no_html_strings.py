"""No HTML is built in Python source: pages come from web/templates (Jinja2, autoescape) and SVG from ElementTree.

Issue 12 found pipelines/outputs.py building pages with f-strings and 26 hand-placed
escapes; one forgotten escape is a stored XSS on a station's screen. This test reads every
module of the packages that ship (conf, features, models, pipelines, serving, web,
simulation) and fails on any string literal or f-string holding an HTML tag, naming file
and line. Docstrings and other bare string statements are skipped: they document markup,
they cannot emit it. Hand escaping (``html.escape``, ``markupsafe.escape``) and ``Markup()``
around a string built in Python are findings too outside web/, the one package that owns
escaping (importing ``Markup`` for a type hint is fine). Nothing else is allowlisted:
web/charts.py names SVG elements without angle brackets (``ET.SubElement(svg, "rect")``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("conf", "features", "models", "pipelines", "serving", "web", "simulation")
TAGS = (
    "html|head|body|meta|link|style|script|title|div|span|p|a|br|hr|img|table|thead|tbody|tfoot|tr|td|th|caption"
    "|ul|ol|li|dl|dt|dd|h[1-6]|form|input|select|option|textarea|button|label|nav|header|footer|main|section"
    "|article|details|summary|pre|code|strong|em|b|i|small|iframe|svg|g|rect|circle|line|polyline|path|text"
)
HTML_TAG = re.compile(rf"<\s*/?\s*(?:{TAGS})(?=[\s/>])|<!doctype", re.IGNORECASE)
"""An opening or closing tag of a common HTML/SVG element (``<td>``, ``<a href``, ``</table>``), or a doctype."""
NAMED_GROUP = re.compile(r"\(\?P<\w+>")
"""A regex named group ``(?P<a>...)``: angle brackets that are not markup."""
ESCAPE_FUNCTIONS = {("html", "escape"), ("markupsafe", "escape")}
"""Hand escaping outside web/: the sign of markup assembled in Python."""


def _literal_text(node: ast.AST) -> str | None:
    """The text a string literal or f-string contributes (an f-string's constant parts joined), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "{}".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return None


def _hand_made_markup(node: ast.AST) -> str | None:
    """``html.escape``/``markupsafe.escape`` (used or imported), or ``Markup(...)`` around a built string."""
    if isinstance(node, ast.ImportFrom) and any((node.module, a.name) in ESCAPE_FUNCTIONS for a in node.names):
        return f"from {node.module} import escape"
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (node.value.id, node.attr) in ESCAPE_FUNCTIONS
    ):
        return f"{node.value.id}.{node.attr}"
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        arg = node.args[0]
        built = isinstance(arg, ast.JoinedStr | ast.BinOp) or (
            isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr in ("format", "join")
        )
        if name == "Markup" and built:
            return "Markup() around a string built in Python"
    return None


def html_in_source(source: str, *, markup_allowed: bool = False) -> list[tuple[int, str]]:
    """(line, excerpt) of every string literal or f-string in ``source`` that holds an HTML tag.

    Unless ``markup_allowed`` (web/: it owns escaping and wraps ElementTree's SVG in Markup),
    hand escaping and ``Markup()`` around a string built in Python are findings too.

    Bare string statements (module, class, function and attribute docstrings) are skipped;
    f-strings are checked as a whole, not part by part, so ``f"<td>{x}</td>"`` is one finding.
    """
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and _literal_text(node.value) is not None:
            skip.add(id(node.value))
        if isinstance(node, ast.JoinedStr):  # its constant parts are checked with the f-string
            skip.update(id(v) for v in node.values)
    found = []
    for node in ast.walk(tree):
        if not markup_allowed:
            finding = _hand_made_markup(node)
            if finding:
                found.append((node.lineno, finding))
        text = _literal_text(node)
        if text is None or id(node) in skip:
            continue
        match = HTML_TAG.search(NAMED_GROUP.sub("", text))
        if match:
            found.append((node.lineno, text[max(0, match.start() - 10) : match.end() + 20].replace("\n", "\\n")))
    return sorted(found)


def python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if ".venv" not in p.parts)


def test_no_html_is_built_in_python_source() -> None:
    files = python_files()
    assert len(files) > 50 and any(p.name == "pages.py" for p in files)  # the scan really reads the tree
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {excerpt}"
        for path in files
        for line, excerpt in html_in_source(path.read_text(encoding="utf-8"), markup_allowed=path.parts[-2] == "web")
    ]
    assert not offenders, "HTML built in Python (use a template under web/templates):\n" + "\n".join(offenders)


def test_the_scan_finds_html_in_strings_fstrings_and_concatenation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""A docstring may show <table> markup."""\n'
        "def page(x):\n"
        '    """Returns <p>text</p>; documentation only."""\n'
        "    head = '<!DOCTYPE html>'\n"
        '    row = f"<tr><td>{x}</td></tr>"\n'
        '    link = "<a href=\\"" + x + "\\">"\n'
        '    close = "</DIV>"\n'
        "    svg = '''\n<svg width=\"1\"/>'''\n"
        '    ok = ["a < b", "x<y>z", r"(?P<p>\\d+)", "<tag>", "<= 3", "<unknown>", "List<String>"]\n'
        "    return head + row + link + close + svg\n"
        "import html\n"
        "from markupsafe import Markup, escape\n"
        "cell = html.escape(name)\n"
        "safe = Markup(f'{cell}')\n"
        "chart: Markup = Markup(svg_text)\n",
        encoding="utf-8",
    )
    found = html_in_source(bad.read_text(encoding="utf-8"))
    assert [line for line, _ in found] == [4, 5, 6, 7, 8, 13, 14, 15]
    assert "<tr><td>{}</td></tr>" in found[1][1]
    assert [text for _, text in found[-3:]] == [
        "from markupsafe import escape",
        "html.escape",
        "Markup() around a string built in Python",
    ]
    assert [line for line, _ in html_in_source(bad.read_text(encoding="utf-8"), markup_allowed=True)] == [4, 5, 6, 7, 8]


@pytest.mark.parametrize(
    "snippet",
    [
        "x = 'plain text'",
        "x = f'{a} < {b}'",
        "ET.SubElement(svg, 'rect', {'x': '1'})",
        "pattern = re.compile(r'(?P<date>\\d{4})')",
        "render('ranking/center.html', rows=rows)",
    ],
)
def test_the_scan_leaves_plain_strings_alone(snippet: str) -> None:
    assert html_in_source(snippet) == []
