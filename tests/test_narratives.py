"""The 110 narrative grammar: layout, cues, negations, diversity and confusers.

Every assertion compares numbers or booleans; no narrative text is put into an
assertion message or printed (narratives carry names, phones and IDs).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulation.grammar import disputes as dsp
from simulation.grammar import lexicon as lx
from simulation.grammar import nondisputes as nds
from simulation.grammar.demo import (
    ID_RE,
    PHONE_RE,
    category_word_shares,
    content_of,
    demo_calls,
    diversity,
    has_keyword,
)
from simulation.grammar.engine import _SLOT, CUE_MASK
from simulation.grammar.header import HEADER_RE, VERBS
from simulation.narratives import (
    CALL_COLUMNS,
    CUES,
    OUTPUT_COLUMNS,
    SUBTYPES,
    _pools,
    render_calls,
    render_narratives,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "narratives.md"


class Rendered(tuple):
    """(calls, rendered, content) with a repr that shows no text: pytest prints
    fixture values in tracebacks, and narratives carry personal data."""

    def __repr__(self) -> str:
        return f"<Rendered: {len(self[0])} calls>"


@pytest.fixture(scope="module")
def demo() -> Rendered:
    """12,000 calls, half disputes, full (unmasked) phones and IDs, with skeletons."""
    calls = demo_calls(12_000, np.random.default_rng(101), dispute_share=0.5, masked=False)
    calls.index = pd.RangeIndex(5_000, 5_000 + len(calls))  # not 0..n-1: the index must be kept
    out = render_calls(calls, np.random.default_rng(202), with_skeleton=True)
    return Rendered((calls, out, content_of(out["narrative"], calls["location_text"])))


def share(mask: np.ndarray | pd.Series) -> float:
    """Mean of a boolean mask as a plain float (assertions then show only numbers)."""
    values = np.asarray(mask, dtype=bool)
    return float(values.mean()) if len(values) else float("nan")


def _truth(calls: pd.DataFrame, cue: str) -> np.ndarray:
    truth = calls[cue].to_numpy(dtype=bool).copy()
    for call_type, implied in nds.IMPLIED_CUES.items():
        if implied == cue:
            truth |= (calls["call_type"] == call_type).to_numpy()
    return truth


def _listed(out: pd.DataFrame, column: str, cue: str) -> np.ndarray:
    return out[column].str.split(",").apply(lambda names: cue in names).to_numpy(dtype=bool)


# --------------------------------------------------------------------------- interface


def test_same_seed_same_output_other_seed_differs() -> None:
    calls = demo_calls(3_000, np.random.default_rng(1))
    first = render_calls(calls, np.random.default_rng(2))
    again = render_calls(calls, np.random.default_rng(2))
    other = render_calls(calls, np.random.default_rng(3))
    identical = bool(first.equals(again))
    changed = share(first["narrative"].to_numpy() != other["narrative"].to_numpy())
    series_same = bool(render_narratives(calls, np.random.default_rng(2)).equals(first["narrative"]))
    assert identical
    assert changed > 0.95
    assert series_same


def test_columns_index_and_subtypes(demo: Rendered) -> None:
    calls, out, _ = demo
    assert list(out.columns[: len(OUTPUT_COLUMNS)]) == list(OUTPUT_COLUMNS)
    assert out.index.equals(calls.index)
    disp = (calls["call_type"] == "dispute").to_numpy()
    assert out.loc[~disp, "subtype"].isna().all()
    fits = [s in SUBTYPES[c] for c, s in zip(calls.loc[disp, "category"], out.loc[disp, "subtype"], strict=True)]
    assert all(fits)
    for cat, subs in SUBTYPES.items():  # every subtype is reachable from the demo counterparts
        used = set(out.loc[disp & (calls["category"] == cat).to_numpy(), "subtype"])
        assert len(used) >= len(subs) - 1, cat
    assert out["template_id"].notna().all()


def test_given_subtype_is_kept_and_domestic_violence_needs_violence() -> None:
    calls = demo_calls(4_000, np.random.default_rng(5), dispute_share=1.0)
    calls["category"] = "family"
    calls["counterpart"] = "husband"
    calls.loc[calls.index[:1000], "subtype"] = "child_custody"
    out = render_calls(calls, np.random.default_rng(6))
    kept = share(out["subtype"].iloc[:1000].to_numpy() == "child_custody")
    dv = out["subtype"].iloc[1000:].to_numpy() == "domestic_violence"
    violent = calls["violence"].iloc[1000:].to_numpy(dtype=bool)
    assert kept == 1.0
    assert int(dv[~violent].sum()) == 0
    assert share(dv[violent]) > 0.2


def test_bad_input_is_refused_and_empty_input_is_fine() -> None:
    calls = demo_calls(10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown call_type"):
        render_calls(calls.assign(call_type="robbery"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="lacks columns"):
        render_calls(calls.drop(columns=["detail"]), np.random.default_rng(0))
    empty = render_calls(calls.iloc[:0], np.random.default_rng(0))
    assert len(empty) == 0 and set(OUTPUT_COLUMNS) <= set(empty.columns)
    assert set(CALL_COLUMNS) <= set(calls.columns)


# --------------------------------------------------------------------------- layout and personal data


def test_header_has_the_real_layout_and_only_the_given_pieces(
    demo: Rendered,
) -> None:
    calls, out, _ = demo
    matches = [HEADER_RE.match(s) for s in out["narrative"]]
    assert sum(m is None for m in matches) == 0
    bad_time = bad_name = bad_contact = with_location = 0
    iso = 0
    for m, (_, row) in zip(matches, calls.iterrows(), strict=True):
        assert m is not None
        t = m["time"]
        iso += "-" in t
        parsed = pd.Timestamp(t) if "-" in t else pd.to_datetime(t, format="%Y年%m月%d日 %H时%M分%S秒")
        bad_time += parsed != row["received_at"]
        name, given = m["name"], row["caller_name"]
        if pd.isna(given):
            bad_name += name not in ("匿名", "未留名", "无名", "")
        else:
            titled = name.endswith(("女士", "先生")) and given.startswith(name[:-2]) and len(name) > 2
            bad_name += not (name == given or titled)
        expected = {p for p in (row["phone_shown"], row["id_shown"]) if pd.notna(p)}
        contact = (m["contact"] or "").strip()
        found = {p for p in re.split(r"[，,]", contact) if p}
        bad_contact += found != expected
        with_location += m["body"].startswith(row["location_text"] + "，")
    assert bad_time == 0
    assert bad_name == 0
    assert bad_contact == 0
    assert 0.05 < iso / len(calls) < 0.2  # mostly 2024年4月11日 21时26分17秒, sometimes ISO
    assert 0.93 < with_location / len(calls) < 0.995  # the location is dropped now and then
    assert {m["verb"] for m in matches if m is not None} == set(VERBS)


def test_no_personal_number_is_invented(demo: Rendered) -> None:
    calls, out, _ = demo
    leftovers = 0
    for text, phone, idn in zip(out["narrative"], calls["phone_shown"], calls["id_shown"], strict=True):
        for given in (phone, idn):
            if pd.notna(given):
                text = text.replace(given, "")
        leftovers += bool(re.search(r"\d{6,}", text)) or bool(PHONE_RE.search(text)) or bool(ID_RE.search(text))
    assert leftovers == 0


def test_doc_samples_show_only_masked_numbers() -> None:
    assert DOC.is_file()
    text = DOC.read_text(encoding="utf-8")
    assert PHONE_RE.search(text) is None
    assert ID_RE.search(text) is None
    assert text.count("****") >= 100  # the samples are there, masked


# --------------------------------------------------------------------------- cues and negations

_MARKERS: dict[str, str] = {
    "violence": "打|殴|推|扇|掐|踹|撕扯|厮打|动手|冲突|揪|拽|薅|按在地上|拳|耳光|救命",
    "weapon": "刀|棍|" + "|".join(sorted({w for ws in lx.WEAPONS.values() for w in ws})),
    "injury": "伤|血|肿|破|淤青|120|起不来|青|牙|口子|受上",
    "threat": "扬言|威胁|弄死|杀|同归于尽|报复|收拾|好看|烧|出不了门|打断|拼命|代价|单位闹",
    "alcohol": "酒|喝|醉",
    "self_harm": "跳|喝药|自杀|不想活|农药|割腕|寻短见|死在|没意思",
    "separation": "离婚|离了婚|分居|搬出去|分手|分开",
}


@pytest.mark.parametrize("cue", CUES)
def test_every_cue_can_be_rendered_and_is_listed(cue: str) -> None:
    calls = demo_calls(3_000, np.random.default_rng(CUES.index(cue)), dispute_share=1.0)
    for c in CUES:
        calls[c] = c == cue
    calls["detail"] = 1.0
    calls["caller_role"] = "party"
    calls["repeat_n"], calls["mediated_before"] = 1, False
    out = render_calls(calls, np.random.default_rng(99))
    listed = _listed(out, "mentioned_cues", cue)
    others = out["mentioned_cues"].str.replace(cue, "").str.strip(",")
    assert (others == "").all()  # only the true cue can be listed
    marked = out["narrative"].str.contains(_MARKERS[cue], regex=True).to_numpy(dtype=bool)
    mentioned, marked_when_listed = share(listed), share(marked[listed])
    assert 0.5 < mentioned < 0.99  # mentioned often, not always
    assert marked_when_listed > 0.97


def test_mentioned_cues_are_true_and_detail_matters(demo: Rendered) -> None:
    calls, out, _ = demo
    low, high = (calls["detail"] < 0.4).to_numpy(), (calls["detail"] > 0.8).to_numpy()
    for cue in CUES:
        truth, listed = _truth(calls, cue), _listed(out, "mentioned_cues", cue)
        assert (listed & ~truth).sum() == 0, cue
        if cue in ("violence", "alcohol"):
            assert listed[truth & low].mean() < listed[truth & high].mean() - 0.1, cue


def test_negations_only_for_absent_cues(demo: Rendered) -> None:
    calls, out, content = demo
    for cue in CUES:
        truth = _truth(calls, cue)
        assert (_listed(out, "negated_cues", cue) & truth).sum() == 0, cue
        phrases = lx.NEGATIONS[cue]
        if phrases:
            said = content.str.contains("|".join(map(re.escape, phrases)), regex=True).to_numpy()
            assert (said & truth).sum() == 0, cue
    disp = (calls["call_type"] == "dispute").to_numpy()
    no_violence = disp & ~calls["violence"].to_numpy(dtype=bool)
    assert 0.05 < _listed(out, "negated_cues", "violence")[no_violence].mean() < 0.4
    assert _listed(out, "negated_cues", "injury")[(calls["call_type"] == "traffic").to_numpy()].mean() > 0.15


def test_repeat_and_mediation_are_said_sometimes(demo: Rendered) -> None:
    calls, out, content = demo
    repeat = (calls["repeat_n"] > 1).to_numpy()
    said = out["mentions_repeat"].to_numpy(dtype=bool)
    assert said[~repeat].sum() == 0
    assert 0.2 < said[repeat].mean() < 0.7
    marker = content.str.contains("又|再次|多次|经常|报过|第.次|三天两头|不是第一次|重复|好几|上次", regex=True)
    marked = share(marker.to_numpy(dtype=bool)[said])
    assert marked > 0.98
    mediated = calls["mediated_before"].to_numpy(dtype=bool)
    med = out["mentions_mediation"].to_numpy(dtype=bool)
    assert med[~mediated].sum() == 0
    assert 0.2 < med[mediated].mean() < 0.7
    said_mediation = share(content.str.contains("调解|调节").to_numpy(dtype=bool)[med])
    assert said_mediation > 0.95


# --------------------------------------------------------------------------- kinds of call


def test_terse_calls_come_from_low_detail(demo: Rendered) -> None:
    calls, out, content = demo
    disp = (calls["call_type"] == "dispute").to_numpy()
    terse = out["template_id"].str.startswith("terse.").to_numpy()
    assert 0.04 < terse[disp].mean() < 0.2
    low, high = (calls["detail"] < 0.3).to_numpy(), (calls["detail"] > 0.7).to_numpy()
    assert terse[disp & low].mean() > 3 * terse[disp & high].mean()
    lengths = content.str.len().to_numpy()
    median_all, median_terse = float(np.median(lengths[disp])), float(np.median(lengths[disp & terse]))
    assert median_all > median_terse + 5


def test_witnesses_speak_as_witnesses(demo: Rendered) -> None:
    calls, out, _ = demo
    disp = (calls["call_type"] == "dispute").to_numpy()
    for role in ("neighbor", "passerby"):
        rows = disp & (calls["caller_role"] == role).to_numpy()
        assert rows.sum() > 50
        witness_share = share(out["template_id"].str.startswith(f"witness.{role}.").to_numpy(dtype=bool)[rows])
        assert witness_share == 1.0
    party = disp & (calls["caller_role"] == "party").to_numpy()
    party_as_witness = int(out["template_id"].str.startswith("witness.").to_numpy(dtype=bool)[party].sum())
    assert party_as_witness == 0


def test_typos_and_punctuation_noise_are_modest(demo: Rendered) -> None:
    _, _, content = demo
    typos = "|".join(re.escape(b) for _, b in lx.TYPOS if b not in ("调节",))  # 调节 is also a real word
    typo_share = share(content.str.contains(typos, regex=True).to_numpy(dtype=bool))
    halfwidth_share = share(content.str.contains(",").to_numpy(dtype=bool))
    assert 0.003 < typo_share < 0.08
    assert 0.005 < halfwidth_share < 0.06


# --------------------------------------------------------------------------- diversity and confusers


def test_diversity(demo: Rendered) -> None:
    calls, out, content = demo
    disp = (calls["call_type"] == "dispute").to_numpy()
    d = diversity(content[disp], out["template_id"][disp], out["skeleton"][disp])
    assert d["distinct_content_share"] > 0.95
    assert d["top_template_share"] < 0.025
    assert d["top_skeleton_share"] < 0.01
    assert d["distinct_templates"] > 500
    assert d["distinct_4grams"] > 40_000
    nd = diversity(content[~disp], out["template_id"][~disp], out["skeleton"][~disp])
    assert nd["distinct_content_share"] > 0.88
    assert nd["top_template_share"] < 0.03
    assert nd["distinct_4grams"] > 15_000


def test_confuser_shares(demo: Rendered) -> None:
    calls, _, content = demo
    kw = has_keyword(content).to_numpy()
    disp = (calls["call_type"] == "dispute").to_numpy()
    assert 0.09 < 1 - kw[disp].mean() < 0.18  # disputes that avoid every stock keyword (doc: 10-20%)
    assert 0.06 < kw[~disp].mean() < 0.15  # non-disputes that use one (doc: 5-15%, demo mix)
    by_type = pd.Series(kw[~disp]).groupby(calls.loc[~disp, "call_type"].to_numpy()).mean()
    assert by_type["fare_dispute"] > 0.5
    assert by_type["stranger_assault"] > 0.15
    assert by_type["consult"] > 0.08
    assert by_type["theft"] < 0.1
    for cat in dsp.CATEGORIES:  # no category is left with only keyword-rich calls
        share = 1 - kw[disp & (calls["category"] == cat).to_numpy()].mean()
        assert share > 0.04, cat


def test_category_language_own_and_borrowed(demo: Rendered) -> None:
    calls, _, content = demo
    disp = (calls["call_type"] == "dispute").to_numpy()
    shares = category_word_shares(content[disp], calls.loc[disp, "category"])
    for cat in dsp.CATEGORIES:
        assert shares.loc[cat, "own"] > 0.55, cat
        assert shares.loc[cat, "own"] > 4 * shares.loc[cat, "others"], cat
    for cat in ("family", "neighbor", "other"):  # overlap: other categories borrow these words
        assert shares.loc[cat, "others"] > 0.03, cat


# --------------------------------------------------------------------------- grammar invariants


def test_fillers_and_reasons_are_well_formed() -> None:
    lx._check_fillers()  # raises if a filler word carries a stock keyword
    for cat, subs in dsp.SUBTYPES.items():
        for sub, spec in subs.items():
            bad = [r for r in spec.reasons if r.endswith(("的事", "问题")) or lx.KEYWORD_RE.search(r)]
            assert bad == [], f"{cat}.{sub}"


def test_every_pool_is_usable() -> None:
    pools = _pools()
    known = {
        "S",
        "SP",
        "O",
        "PS",
        "W",
        "W2",
        "R",
        "X",
        "M",
        "D",
        "N",
        "T",
        "PL",
        "NB",
        "AN",
        "LV",
        "BODY",
        "ITEM",
    }
    known |= {"VEH", "SHOP", "EAT", "BLD", "REL", "WPN", "RN"}
    everything = [*pools.main_pools(), *pools.cue_party.values(), *pools.cue_witness.values(), pools.wrap]
    for pool in everything:
        assert pool.slots() <= known, pool.name
    for pool in pools.main_pools():
        assert ((pool.need & CUE_MASK) == 0).any(), pool.name  # a cue-free clause always exists
    for pool in (*pools.subtype.values(), pools.generic, *pools.witness.values()):
        assert pool.kw.any() and (~pool.kw).any(), pool.name  # both keyword modes are possible
    assert all(_SLOT.search(t) is None for t in lx.NEGATIONS["violence"])


# --------------------------------------------------------------------------- channels, refusals, duplicates


def test_channels_refusals_and_duplicates_render_and_parse() -> None:
    from features.text import parse_header

    n = 4_000
    calls = demo_calls(n, np.random.default_rng(303), dispute_share=0.5, masked=True)
    rng = np.random.default_rng(304)
    calls["channel"] = np.array(["110", "12345", "in_person"], dtype=object)[rng.choice(3, n, p=[0.7, 0.15, 0.15])]
    calls["refused"] = rng.random(n) < 0.1
    calls.loc[calls["refused"], "caller_name"] = None
    dup = np.full(n, -1)
    dup[1::50] = np.arange(0, n - 1, 50)  # row i+1 re-logs row i: the same call a minute later
    copies = np.flatnonzero(dup >= 0)
    calls.iloc[copies] = calls.iloc[dup[copies]].to_numpy()
    calls.iloc[copies, calls.columns.get_loc("received_at")] += pd.Timedelta(seconds=60)
    calls["duplicate_of"] = dup
    out = render_calls(calls, np.random.default_rng(305))
    again = render_calls(calls, np.random.default_rng(305))
    assert out.equals(again)
    heads = [parse_header(t) for t in out["narrative"]]
    parsed = share([h.has_header for h in heads])
    matched = share([HEADER_RE.match(t) is not None for t in out["narrative"]])
    assert parsed == 1.0 and matched == 1.0
    body = content_of(out["narrative"], calls["location_text"]).reset_index(drop=True)
    parsed_body = pd.Series([h.content for h in heads])
    hotline = (calls["channel"] == "12345").to_numpy()
    station = (calls["channel"] == "in_person").to_numpy()
    opened = share(body[hotline].str.match(r"^(12345|市民热线)"))
    parsed_opened = share(parsed_body[hotline].str.match(r"^(12345|市民热线)"))  # parse_header finds the body
    at_station = share(body[station].str.contains("到所|来所|到派出所"))
    elsewhere = share(body[~hotline & ~station].str.contains("12345|到所|来所"))
    assert opened == 1.0 and parsed_opened > 0.95 and at_station == 1.0 and elsewhere == 0.0
    verbs = pd.Series([HEADER_RE.match(t)["verb"] for t in out["narrative"]])
    hotline_verb = share(verbs[hotline] == "来电：")
    station_verbs = share(verbs[station].isin(["报警：", "报案："]))
    assert hotline_verb == 1.0 and station_verbs == 1.0
    refused = calls["refused"].to_numpy()
    said = out["narrative"].str.contains("不愿|拒绝|不肯").to_numpy()
    said_refused, said_other = share(said[refused]), share(said[~refused])
    assert said_refused > 0.5 and said_other < 0.01
    same_body = share(body[copies].to_numpy() == body[dup[copies]].to_numpy())
    same_template = share(out["template_id"].to_numpy()[copies] == out["template_id"].to_numpy()[dup[copies]])
    assert same_body == 1.0 and same_template == 1.0
    with pytest.raises(ValueError, match="duplicate_of"):
        render_calls(calls.assign(duplicate_of=np.arange(n)), np.random.default_rng(1))


def test_bare_acts_and_ambulance_notes() -> None:
    calls = demo_calls(6_000, np.random.default_rng(306), dispute_share=1.0, masked=True)
    calls["violence"], calls["injury"] = True, np.random.default_rng(307).random(len(calls)) < 0.5
    calls["caller_role"] = "party"
    out = render_calls(calls, np.random.default_rng(308), with_skeleton=True)
    bare = out["skeleton"].str.contains(r"\|bare#").to_numpy()
    assert 0.08 < share(bare) < 0.3  # 被丈夫殴打。: the whole body is the act
    content = content_of(out["narrative"], calls["location_text"])
    bare_median = float(content[bare].str.len().median())
    assert bare_median < 22
    ambulance = out["narrative"].str.contains(r"(?<![\d*])120(?![\d*])").to_numpy()
    injured = calls["injury"].to_numpy()
    assert share(ambulance[injured]) > 0.15
    says_needed = out["narrative"].str.contains(r"(?<!不)(?<!无)(?<!不用叫)需要120|已通知120|120已到场").to_numpy()
    assert share(says_needed[~injured]) == 0.0  # no ambulance for someone who is not hurt
