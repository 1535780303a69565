"""The CSV reader loses nothing: every line of a generated file is read, quarantined with its raw text, or blank.

Files are generated with hypothesis from good rows (commas, quotes, line
breaks inside quoted values, Chinese text), broken lines (a quote never
closed, text after a closing quote, too many or too few fields, bytes that
are not UTF-8, a NUL, a stray carriage return) and blank lines, with or
without a BOM, with LF or CRLF line ends, in UTF-8 or GB18030.

One ambiguity is left out on purpose: a good value that *starts* with a
quote, a comma or a line break can close a broken quote above it with a
record that looks valid (docs/data-contract.md, "What happens to a row that does not fit").
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.csv_reader import (
    LINE,
    RAW,
    REASON,
    ROW,
    NoHeader,
    read_csv_table,
    record_starts,
    resync_lines,
    split_lines,
)

HEADER = ["编号", "b", "c", "d"]
CHARS = "ab 中文,\"\n'；x1\t"
PLAIN = "abc中文xyz 12"

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@dataclass(frozen=True)
class Good:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Bad:
    text: bytes
    kind: str


@dataclass(frozen=True)
class Blank:
    pass


def _good_value() -> st.SearchStrategy[str]:
    """Any text but one that starts with a quote, a comma or a line break (see the module docstring)."""
    return st.text(CHARS, max_size=12).filter(lambda v: not v.startswith(('"', ",", "\n", "\r")))


def _plain(min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(PLAIN, min_size=min_size, max_size=8)


@st.composite
def _bad_line(draw: st.DrawFn, width: int) -> Bad:
    kind = draw(st.sampled_from(["unclosed", "junk", "count", "bytes", "nul", "cr"]))
    fields = draw(st.lists(_plain(1), min_size=width, max_size=width))
    at = draw(st.integers(0, width - 1))
    if kind == "unclosed":
        fields[at] = '"' + fields[at]
    elif kind == "junk":
        fields[at] = f'"{fields[at]}"{draw(_plain(1))}'
    elif kind == "count":
        k = draw(st.integers(1, width + 2).filter(lambda k: k != width))
        fields = draw(st.lists(_plain(1), min_size=k, max_size=k))
    elif kind == "nul":
        fields[at] += "\x00"
    elif kind == "cr":
        fields[at] = fields[at][:1] + "\r" + fields[at][1:] + "z"
    text = ",".join(fields).encode("utf-8")
    if kind == "bytes":
        text = text + b"\xff\xfe"
    return Bad(text, kind)


@st.composite
def _file(draw: st.DrawFn, broken: bool = True) -> tuple[bytes, list, str, str]:
    width = draw(st.integers(2, 4))
    good = st.lists(_good_value(), min_size=width, max_size=width).map(lambda v: Good(tuple(v)))
    kinds = [good, _bad_line(width), st.just(Blank())] if broken else [good, st.just(Blank())]
    items = draw(st.lists(st.one_of(*kinds), max_size=12))
    if sum(isinstance(i, Bad) and i.kind == "bytes" for i in items) > 1:  # the header's Chinese outvotes one bad line
        first = next(n for n, i in enumerate(items) if isinstance(i, Bad) and i.kind == "bytes")
        items = [i for n, i in enumerate(items) if n == first or not (isinstance(i, Bad) and i.kind == "bytes")]
    end = draw(st.sampled_from(["\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "gb18030"]))
    bom = encoding == "utf-8" and draw(st.booleans())
    chunks = [_row_text(HEADER[:width], end).encode(encoding)]
    for item in items:
        if isinstance(item, Good):
            chunks.append(_row_text(list(item.values), end).encode(encoding))
        elif isinstance(item, Bad):
            text = item.text if encoding == "utf-8" else _to(item.text, encoding)
            chunks.append(text + end.encode())
        else:
            chunks.append(end.encode())
    if items and draw(st.booleans()):  # the last line without its line end
        chunks[-1] = chunks[-1][: -len(end)] if not isinstance(items[-1], Blank) else chunks[-1]
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(chunks)
    return data, items, encoding, end


def _to(utf8: bytes, encoding: str) -> bytes:
    """A bad line's bytes in the file's encoding (its invalid bytes stay invalid)."""
    head, bad, _ = utf8.partition(b"\xff\xfe")
    return head.decode("utf-8").encode(encoding) + (b"\xff\xfe" if bad else b"")


def _row_text(values: list[str], end: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=end).writerow(values)
    return buffer.getvalue()


def _expected(data: bytes, items: list, encoding: str) -> tuple[list[tuple], list[str], list[int], list[int]]:
    """Good rows, raw texts of bad lines, and the first physical line of each, walking the file as written."""
    good, raws, good_lines, bad_lines = [], [], [], []
    line = 2  # the header is line 1 (never multi-line here)
    for item in items:
        if isinstance(item, Good):
            good.append(item.values)
            good_lines.append(line)
            line += "".join(item.values).count("\n") + 1
        elif isinstance(item, Bad):
            raws.append(
                (item.text if encoding == "utf-8" else _to(item.text, encoding)).decode(encoding, "backslashreplace")
            )
            bad_lines.append(line)
            line += 1
        else:
            line += 1
    return good, raws, good_lines, bad_lines


@SETTINGS
@given(_file())
def test_every_record_is_read_or_quarantined_with_its_raw_text(tmp_path: Path, generated: tuple) -> None:
    data, items, encoding, _end = generated
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    good, raws, good_lines, bad_lines = _expected(data, items, encoding)

    table = read_csv_table(path)

    assert table.read == len(good) + len(raws)  # read = accepted + quarantined
    assert [tuple(r) for r in table.frame.itertuples(index=False)] == good  # no good row lost or changed
    assert table.lines.tolist() == good_lines
    assert table.broken[RAW].tolist() == raws  # every bad line, on its own, with its text
    assert table.broken[LINE].tolist() == bad_lines
    numbers = sorted([*table.frame.index, *table.broken[ROW]])
    assert numbers == list(range(1, table.read + 1))  # each record numbered once, in file order
    assert table.encoding == encoding
    assert table.resynced or not raws  # a broken line is only ever caught by the resynchronising path
    for reason in table.broken[REASON]:  # reasons name lines and rules, never text
        assert not any(r and r in reason for r in raws if len(r) > 3)


@SETTINGS
@given(_file(broken=False))
def test_the_fast_path_and_the_resynchronising_path_agree_on_clean_files(tmp_path: Path, generated: tuple) -> None:
    data, _items, encoding, _end = generated
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    fast = read_csv_table(path)
    assert not fast.resynced  # a clean file never needs the line-by-line path
    text = data.removeprefix(b"\xef\xbb\xbf").decode(encoding)
    slow = resync_lines(split_lines(text), encoding)
    pd.testing.assert_frame_equal(fast.frame, slow.frame, check_index_type=False)
    assert fast.lines.tolist() == slow.lines.tolist()
    assert fast.broken.empty and slow.broken.empty


def test_a_clean_file_with_multiline_quoted_values_takes_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b\r\n1,"称：\r\n他打我，""快来"""\r\n\r\n2,x\r\n', encoding="utf-8")
    table = read_csv_table(path)
    assert not table.resynced
    assert table.frame["b"].tolist() == ['称：\r\n他打我，"快来"', "x"]
    assert table.lines.tolist() == [2, 5]


def test_a_broken_quote_costs_one_line_and_the_lines_after_it_are_read(tmp_path: Path) -> None:
    """The issue 11 case: an unclosed quote used to swallow the next lines; now it is one quarantined line."""
    path = tmp_path / "t.csv"
    path.write_text('a,b,c\n1,"open,x\n2,y,z\n3,"q",w\n4,k,l\n', encoding="utf-8")
    table = read_csv_table(path)
    assert table.resynced
    assert table.frame["a"].tolist() == ["2", "3", "4"]
    assert table.broken[[ROW, LINE, RAW]].values.tolist() == [[1, 2, '1,"open,x']]
    assert (
        table.broken[REASON].item() == "quote opened on this line is not closed properly (text after a quote on line 4)"
    )


def test_a_quote_never_closed_at_the_end_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,2\n3,"never\n4,5\n', encoding="utf-8")
    table = read_csv_table(path)
    assert table.frame["a"].tolist() == ["1", "4"]
    assert table.broken[REASON].item() == "quote opened on this line is never closed"


def test_undecodable_bytes_quarantine_their_line_and_keep_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("a,b\n张,三\n".encode() + b"\xe5\xbc,x\n" + "李,四\n".encode())
    table = read_csv_table(path)
    assert table.encoding == "utf-8"  # not read as GB18030 mojibake because of one damaged line
    assert table.frame["a"].tolist() == ["张", "李"]
    assert table.broken[[LINE, REASON, RAW]].values.tolist() == [[3, "bytes that are not valid utf-8", "\\xe5\\xbc,x"]]


def test_gb18030_file_is_read_on_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes('编号,名称\n1,张三\n2,"李,四"\n'.encode("gb18030"))
    table = read_csv_table(path)
    assert (table.encoding, table.resynced) == ("gb18030", False)
    assert table.frame["名称"].tolist() == ["张三", "李,四"]


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\r\n"])
def test_a_file_without_a_header_says_so(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(NoHeader):
        read_csv_table(path)


def test_record_starts_refuses_what_only_a_strict_reader_may_read() -> None:
    assert record_starts(b'a,b\n1,"x\ny"\n2,3\n')[1].tolist() == [2, 4]
    for unclean in (b'a,b\n1,"x"y\n', b'a,b\n1,"x\n', b'a,b\n1,x"y\n', b"a,b\n1,\x00\n", b"a,b\n1,x\ry\n"):
        assert record_starts(unclean) is None, unclean
