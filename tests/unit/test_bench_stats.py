"""The benchmarks' statistics (pure): spreads and nearest-rank percentiles."""

from hypothesis import given
from hypothesis import strategies as st

from xapi_sim.bench import percentile, spread

floats = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.lists(floats, min_size=1, max_size=50))
def test_spread_orders_min_median_max(values):
    s = spread(values, 6)
    assert s["min"] <= s["median"] <= s["max"]
    assert s["n"] == len(values)


@given(st.lists(floats, min_size=1, max_size=200), st.floats(min_value=0, max_value=1))
def test_percentile_is_a_member_and_monotone(values, q):
    values.sort()
    p = percentile(values, q)
    assert p in values
    assert percentile(values, 0.0) <= p <= percentile(values, 1.0) == values[-1]


def test_p99_of_a_hundred_is_the_99th():
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
