"""Schema validation: one test per kind of bad input; messages name file, row and column."""

from __future__ import annotations

import pandas as pd
import pytest

from features.contract.schema import CUSTOMERS, EVENTS, PRODUCTS, STORES
from features.contract.validate import DataError, validate_frame


def _error(raw: pd.DataFrame, table=EVENTS, file="events.csv") -> str:
    with pytest.raises(DataError) as info:
        validate_frame(raw, table, file)
    return str(info.value)


def test_good_rows_get_contract_dtypes(raw_events):
    good = validate_frame(raw_events, EVENTS, "events.csv").good
    assert len(good) == 5
    assert str(good["ts"].dtype) == "datetime64[us, UTC]"
    assert list(good["channel"].cat.categories) == list(EVENTS.column("channel").allowed)
    # Offsets are converted to UTC, naive timestamps read as UTC.
    assert good["ts"].iloc[3] == pd.Timestamp("2025-02-10T07:00:00Z")
    assert good["quantity"].iloc[1] == 2
    assert good["amount"].iloc[1] == 9.5


def test_missing_required_column(raw_events):
    msg = _error(raw_events.drop(columns=["event_type"]))
    assert "events.csv" in msg and "'event_type'" in msg and "required column missing" in msg


def test_no_identifier_column_at_all(raw_events):
    msg = _error(raw_events.drop(columns=["customer_id", "device_id"]))
    assert "customer_id (or an identifier column" in msg


def test_row_without_any_identifier(raw_events):
    raw_events.loc[3, "device_id"] = None
    msg = _error(raw_events)
    assert "events.csv, row 4, column 'customer_id'" in msg and "no customer_id" in msg


def test_unknown_channel(raw_events):
    raw_events.loc[2, "channel"] = "fax"
    msg = _error(raw_events)
    assert "events.csv, row 3, column 'channel': unknown value (allowed:" in msg
    assert "got 'fax'" in msg


def test_unknown_event_type(raw_events):
    raw_events.loc[0, "event_type"] = "teleport"
    assert "row 1, column 'event_type'" in _error(raw_events)


def test_unparsable_timestamp(raw_events):
    raw_events.loc[1, "ts"] = "yesterday-ish"
    msg = _error(raw_events)
    assert "row 2, column 'ts': unparsable timestamp: got 'yesterday-ish'" in msg


def test_empty_required_value(raw_events):
    raw_events.loc[4, "ts"] = ""
    assert "row 5, column 'ts': required value is empty" in _error(raw_events)


def test_negative_quantity_on_purchase(raw_events):
    raw_events.loc[1, "quantity"] = "-3"
    assert "row 2, column 'quantity': negative quantity on a purchase: got '-3'" in _error(
        raw_events
    )


def test_negative_quantity_allowed_on_other_events(raw_events):
    raw_events.loc[0, "quantity"] = "-1"  # a view with a negative quantity is odd but legal
    assert len(validate_frame(raw_events, EVENTS, "e").good) == 5


def test_non_numeric_amount(raw_events):
    raw_events.loc[1, "amount"] = "ten"
    assert "row 2, column 'amount': not a number: got 'ten'" in _error(raw_events)


@pytest.mark.parametrize(
    ("table", "key"), [(CUSTOMERS, "customer_id"), (PRODUCTS, "product_id"), (STORES, "store_id")]
)
def test_duplicate_ids_in_dimension_table(table, key):
    raw = pd.DataFrame({key: ["a", "b", "a"]})
    msg = _error(raw, table, f"{table.name}.parquet")
    assert f"{table.name}.parquet, row 1, column '{key}': duplicate id 'a'" in msg
    assert "row 3" in msg


def test_bad_boolean_consent():
    raw = pd.DataFrame({"customer_id": ["a", "b"], "consent_sms": ["yes", "perhaps"]})
    assert "row 2, column 'consent_sms': not a boolean" in _error(raw, CUSTOMERS, "c.csv")


def test_quarantine_keeps_good_rows_and_explains_bad(raw_events):
    raw_events.loc[1, "quantity"] = "-3"
    raw_events.loc[2, "channel"] = "fax"
    result = validate_frame(raw_events, EVENTS, "events.csv", on_error="quarantine")
    assert len(result.good) == 3
    assert list(result.bad["_row"]) == [2, 3]
    assert list(result.bad["_column"]) == ["quantity", "channel"]
    assert result.bad["_reason"].str.contains("negative quantity").iloc[0]
    assert (result.bad["_file"] == "events.csv").all()
    # The bad rows keep their original values for the user to fix.
    assert result.bad["channel"].iloc[1] == "fax"


def test_error_lists_at_most_ten_and_counts_the_rest():
    n = 25
    raw = pd.DataFrame(
        {
            "customer_id": ["c"] * n,
            "ts": ["bad"] * n,
            "channel": ["web"] * n,
            "event_type": ["view"] * n,
        }
    )
    msg = _error(raw)
    assert msg.startswith("25 problems")
    assert "... and 15 more bad rows" in msg


# issue 14: numbers, ids, time ranges and nested values that used to crash or load wrong


@pytest.mark.parametrize("column", ["amount", "discount", "quantity"])
@pytest.mark.parametrize("value", ["inf", "-Infinity", "1e400"])
def test_non_finite_numbers_are_rejected(raw_events, column, value):
    # issue 14: inf, -Infinity and 1e400 loaded as infinities
    raw_events.loc[1, column] = value
    assert f"row 2, column '{column}': not a finite number: got '{value}'" in _error(raw_events)


def test_integers_up_to_two_to_the_53_load_exactly(raw_events):
    # issue 14: huge quantities crashed the Int64 cast
    raw_events.loc[1, "quantity"] = "9007199254740991"
    assert validate_frame(raw_events, EVENTS, "e").good["quantity"].iloc[1] == 2**53 - 1
    raw_events.loc[1, "quantity"] = "9007199254740993"
    assert "row 2, column 'quantity': integer out of range" in _error(raw_events)


def test_bad_integers_are_quarantined_not_crashing(raw_events):
    # issue 14: "cannot safely cast non-equivalent float64 to int64", also when quarantining
    raw_events.loc[0, "quantity"] = "1.5"
    raw_events.loc[1, "quantity"] = "18446744073709551615"
    result = validate_frame(raw_events, EVENTS, "events.csv", on_error="quarantine")
    assert list(result.bad["_row"]) == [1, 2]
    assert str(result.good["quantity"].dtype) == "Int64"


def test_ids_are_capped_at_the_services_limit_in_characters(raw_events):
    # issue 14: ids the service refuses are refused at load; one limit for both
    from pydantic import TypeAdapter, ValidationError

    from features.contract.schema import MAX_ID_LENGTH
    from serving.schemas import CustomerId

    service = TypeAdapter(CustomerId)
    at_limit = "\u00e9" * MAX_ID_LENGTH  # 200 characters, 400 bytes: still accepted
    service.validate_python(at_limit)
    raw_events.loc[0, "customer_id"] = at_limit
    assert validate_frame(raw_events, EVENTS, "e").good["customer_id"].iloc[0] == at_limit
    one_more = at_limit + "\u00e9"
    with pytest.raises(ValidationError):
        service.validate_python(one_more)
    raw_events.loc[0, "customer_id"] = one_more
    assert "row 1, column 'customer_id': id longer than 200 characters" in _error(raw_events)


def test_ids_with_nul_are_rejected(raw_events):
    # issue 14: ids with NUL are refused at load
    raw_events.loc[3, "device_id"] = "d\x009"
    assert "row 4, column 'device_id': id contains a NUL character" in _error(raw_events)


def test_timestamps_outside_the_range_are_rejected_unless_widened(raw_events):
    # issue 14: timestamps made partitions month=100001 / month=220001
    from features.contract.validate import TimeRange

    raw_events.loc[0, "ts"] = "1969-07-20T20:17:00Z"
    raw_events.loc[2, "ts"] = "2999-01-01"
    now = pd.Timestamp("2025-06-01", tz="UTC")
    result = validate_frame(
        raw_events, EVENTS, "e", on_error="quarantine", times=TimeRange.default(now)
    )
    assert list(result.bad["_row"]) == [1, 3]
    assert "timestamp before 1970-01-01 00:00:00 UTC" in result.bad["_reason"].iloc[0]
    assert "timestamp after 2025-06-02 00:00:00 UTC" in result.bad["_reason"].iloc[1]
    wide = TimeRange.parse("1960-01-01", "3000-01-01")
    assert len(validate_frame(raw_events, EVENTS, "e", times=wide).good) == 5


def test_time_range_options_name_the_bad_value():
    # issue 14: the time-range override names a bad value
    from features.contract.validate import TimeRange

    with pytest.raises(ValueError, match="--ts-max 'soon' is not a date"):
        TimeRange.parse(None, "soon")
    with pytest.raises(ValueError, match=r"--ts-min .* is after --ts-max"):
        TimeRange.parse("2020-01-01", "2019-01-01")


def test_negative_and_infinite_prices_are_rejected():
    # issue 14: negative or infinite product prices loaded
    raw = pd.DataFrame({"product_id": ["a", "b", "c"], "price": ["1", "-0.5", "inf"]})
    result = validate_frame(raw, PRODUCTS, "products.csv", on_error="quarantine")
    assert list(result.bad["_row"]) == [2, 3]
    assert list(result.bad["_reason"]) == [
        "negative price: got '-0.5'",
        "not a finite number: got 'inf'",
    ]


def test_lists_in_a_column_are_bad_rows_not_a_crash(raw_events):
    # issue 14: a column of lists crashed with "unhashable type"
    raw_events["channel"] = raw_events["channel"].astype(object)
    raw_events.at[2, "channel"] = ["email", "sms"]  # a list among strings (mixed kinds)
    result = validate_frame(raw_events, EVENTS, "e", on_error="quarantine")
    assert 3 in list(result.bad["_row"])
    assert result.bad.set_index("_row").loc[3, "_column"] == "channel"


def test_integers_over_64_bits_are_bad_rows_not_a_crash(raw_events):
    # issue 19's fuzzing: a JSON event's quantity of 2**70 raised OverflowError (a 500)
    raw_events["quantity"] = raw_events["quantity"].astype(object)
    raw_events.at[1, "quantity"] = -(2**70)
    result = validate_frame(raw_events, EVENTS, "e", on_error="quarantine")
    assert result.bad.set_index("_row").loc[2, "_column"] == "quantity"


def test_long_values_are_cut_short_in_messages(raw_events):
    # issue 14: a 200+ character id must not flood the error message
    raw_events.loc[0, "customer_id"] = "x" * 5000
    msg = _error(raw_events)
    assert "... (5,000 characters)" in msg and len(msg) < 400
