"""retailpulse.env: every reader takes what it understands and refuses the rest, naming the variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from retailpulse import env

VARIABLE = "RETAILPULSE_TEST_SETTING"


@pytest.fixture
def variable(monkeypatch):
    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(VARIABLE, raising=False)
        else:
            monkeypatch.setenv(VARIABLE, value)

    return set_to


@pytest.mark.parametrize(
    ("reader", "value", "expected"),
    [
        (lambda: env.env_bool(VARIABLE, False), " Yes ", True),
        (lambda: env.env_bool(VARIABLE, True), "off", False),
        (lambda: env.env_bool(VARIABLE, True), "", True),  # empty: the default
        (lambda: env.env_bool(VARIABLE, False), None, False),
        (lambda: env.env_int(VARIABLE, 3), "25_000", 25_000),
        (lambda: env.env_int(VARIABLE, 3), None, 3),
        (lambda: env.env_float(VARIABLE, 1.0), "0.5", 0.5),
        (lambda: env.env_float(VARIABLE, 1.0, maximum=10), "10", 10.0),
        (lambda: env.env_names(VARIABLE, "JPEG"), " jpeg, heif ,png", ("JPEG", "HEIF", "PNG")),
        (lambda: env.env_choice(VARIABLE, "plain", ("plain", "json")), "JSON", "json"),
        (lambda: env.env_range(VARIABLE, "0"), "0.1-0.4", (0.1, 0.4)),
        (lambda: env.env_range(VARIABLE, "0"), "0.25", (0.25, 0.25)),
        (lambda: env.env_rate(VARIABLE), "120/min", "120/min"),
        (lambda: env.env_rate(VARIABLE), None, ""),
    ],
)
def test_a_reader_takes_what_it_understands(variable, reader, value, expected):
    variable(value)
    assert reader() == expected


@pytest.mark.parametrize(
    ("reader", "value"),
    [
        (lambda: env.env_bool(VARIABLE, False), "ture"),
        (lambda: env.env_int(VARIABLE, 3), "3.5"),
        (lambda: env.env_int(VARIABLE, 3), "-1"),
        (lambda: env.env_int(VARIABLE, 3, minimum=1), "0"),
        (lambda: env.env_float(VARIABLE, 1.0), "nan"),
        (lambda: env.env_float(VARIABLE, 1.0), "inf"),
        (lambda: env.env_float(VARIABLE, 1.0), "-0.5"),
        (lambda: env.env_float(VARIABLE, 1.0, maximum=10), "10.5"),
        (lambda: env.env_names(VARIABLE, "JPEG"), "JPEG PNG"),
        (lambda: env.env_names(VARIABLE, "JPEG"), ","),
        (lambda: env.env_choice(VARIABLE, "plain", ("plain", "json")), "xml"),
        (lambda: env.env_range(VARIABLE, "0"), "fast"),
        (lambda: env.env_range(VARIABLE, "0"), "-1"),
        (lambda: env.env_range(VARIABLE, "0"), "0.4-0.1"),
        (lambda: env.env_rate(VARIABLE), "120"),
    ],
)
def test_a_reader_refuses_what_it_does_not_understand_naming_the_variable(variable, reader, value):
    variable(value)
    with pytest.raises(ImproperlyConfigured, match=rf"^{VARIABLE}={value!r}: expected "):
        reader()
