"""Group attributes of a household at a date: the one home of "which group is this household in".

The disparity audit (models/disparity.py) and the monthly report's disparity
section both ask whether warnings fall evenly on counties, ethnic groups,
sexes, registered and floating households and age bands. A warning goes to a
household, so a household needs one value per attribute; the registry names
one person per household, the head (户主), and the person attributes are the
head's. That is a simplification the documents state (docs/fairness.md): a
household with a Mongolian wife and a Han head counts as Han.

Point in time: the age band is the head's age on the snapshot date, so the
same household can move from one band to the next during a test period.
Nothing here reads names or ID numbers; the output holds group labels only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ATTRIBUTES: tuple[str, ...] = ("county", "ethnicity", "sex", "residence", "age_band")
"""The audited attributes, in the order the tables show them."""

ATTRIBUTE_NAMES: dict[str, str] = {
    "county": "county 县区",
    "ethnicity": "ethnicity of the head 户主民族",
    "sex": "sex of the head 户主性别",
    "residence": "registered or floating 户籍/流动",
    "age_band": "age of the head 户主年龄",
}
"""How a table or chart names each attribute."""

AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<30", 0, 30),
    ("30-44", 30, 45),
    ("45-59", 45, 60),
    ("60+", 60, np.inf),
)
"""(label, from age, to age) in whole years at the date: young households, two working-age bands, retired."""

UNKNOWN = "unknown"
"""The value when the registry does not say (a head missing from persons, an address without a county)."""


def household_attributes(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per household: county, the head's ethnicity, sex and birth date, and registered/floating.

    Indexed by ``household_id``. Residence is ``households.household_type``
    (户籍户 or 流动人口户), the household's own status, not the head's.
    """
    households = tables["households"][["household_id", "address_id", "head_person_id", "household_type"]]
    counties = tables["addresses"][["address_id", "county_name"]].drop_duplicates("address_id")
    heads = tables["persons"][["person_id", "ethnicity", "sex", "birth_date"]].drop_duplicates("person_id")
    out = households.merge(counties, on="address_id", how="left").merge(
        heads, left_on="head_person_id", right_on="person_id", how="left"
    )
    out = out.rename(columns={"county_name": "county", "household_type": "residence"})
    for name in ("county", "ethnicity", "sex", "residence"):
        out[name] = out[name].astype(object).where(out[name].notna(), UNKNOWN)
    return out.set_index("household_id")[["county", "ethnicity", "sex", "residence", "birth_date"]]


def age_band(birth_date: pd.Series, on: pd.Series) -> np.ndarray:
    """The band of each age in whole years on the date (a birthday counts on its day); unknown without a birth date."""
    born = pd.to_datetime(pd.Series(birth_date).reset_index(drop=True))
    day = pd.to_datetime(pd.Series(on).reset_index(drop=True))
    before_birthday = (day.dt.month < born.dt.month) | ((day.dt.month == born.dt.month) & (day.dt.day < born.dt.day))
    years = (day.dt.year - born.dt.year - before_birthday.astype(int)).to_numpy(np.float64)
    labels = np.full(len(years), UNKNOWN, dtype=object)
    for label, low, high in AGE_BANDS:
        labels[(years >= low) & (years < high)] = label
    return labels


def groups_at(tables: dict[str, pd.DataFrame], household_id: pd.Series, dates: pd.Series) -> pd.DataFrame:
    """The audited attributes of each (household, date) row, in the rows' order (columns: :data:`ATTRIBUTES`).

    A household missing from the registry gets ``unknown`` everywhere rather
    than being dropped: the audit must count every warning it was given.
    """
    attributes = household_attributes(tables)
    ids = pd.Series(household_id).reset_index(drop=True)
    rows = attributes.reindex(ids.to_numpy())
    out = pd.DataFrame(
        {name: rows[name].fillna(UNKNOWN).to_numpy(object) for name in ("county", "ethnicity", "sex", "residence")}
    )
    out["age_band"] = age_band(rows["birth_date"], dates)
    return out[list(ATTRIBUTES)]
