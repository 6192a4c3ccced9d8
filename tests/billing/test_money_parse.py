"""Money typed by people: one parser (billing.money.parse_money) behind one form field (billing.forms.MoneyField),
and one display format (billing.money.format_money) behind the `money` filter and the views."""
import pytest
from django import forms
from django.template import Context, Template

from billing.forms import MoneyField
from billing.money import MICRO, MoneyParseError, format_money, money_display, money_plain, parse_money


@pytest.mark.parametrize("text,micro", [
    ("12.50", 12_500_000), ("0.000001", 1), ("1", MICRO), (" 7 ", 7 * MICRO), (".5", 500_000), ("5.", 5 * MICRO),
    ("-3.25", -3_250_000), ("000.100000", 100_000), ("999999999", 999_999_999 * MICRO),
])
def test_parse_money_takes_plain_decimals_exactly(text, micro):
    assert parse_money(text) == micro


@pytest.mark.parametrize("text,reason", [
    ("1e3", "format"), ("1E3", "format"), ("NaN", "format"), ("nan", "format"), ("inf", "format"),
    ("Infinity", "format"), ("-inf", "format"), ("1,000", "format"), ("1 000", "format"), ("$5", "format"),
    ("", "format"), (".", "format"), ("--1", "format"), ("0x10", "format"), ("١٢", "format"),  # Arabic digits
    ("1.0000001", "precision"), ("0.1234567", "precision"),
])
def test_parse_money_refuses_anything_else(text, reason):
    with pytest.raises(MoneyParseError) as caught:
        parse_money(text)
    assert caught.value.reason == reason and isinstance(caught.value, ValueError)


class Amounts(forms.Form):
    plain = MoneyField(required=False)
    signed = MoneyField(required=False, signed=True)
    nonzero = MoneyField(required=False, allow_zero=False, max_amount=100 * MICRO)


def errors_for(**data):
    form = Amounts(data)
    form.is_valid()
    return {name: [e.code for e in errs.as_data()] for name, errs in form.errors.items()}, form


@pytest.mark.parametrize("value,code", [
    ("1e3", "invalid"), ("NaN", "invalid"), ("inf", "invalid"), ("1,5", "invalid"), ("1.0000001", "precision"),
    ("-1", "negative"), ("-0", "negative"), ("9" * 41, "too_large"), ("1000000000.000001", "too_large"),
])
def test_money_field_messages(value, code):
    errors, form = errors_for(plain=value)
    assert errors == {"plain": [code]}
    assert form.errors["plain"][0]  # a sentence for people, not only a code


def test_money_field_signs_zero_and_bounds():
    errors, form = errors_for(plain="12.5", signed="-3.000001", nonzero="100")
    assert errors == {} and form.cleaned_data == {"plain": 12_500_000, "signed": -3_000_001, "nonzero": 100 * MICRO}
    assert errors_for(nonzero="0")[0] == {"nonzero": ["zero"]}
    assert errors_for(nonzero="0.000000")[0] == {"nonzero": ["zero"]}
    assert errors_for(nonzero="100.000001")[0] == {"nonzero": ["too_large"]}
    assert errors_for(plain="")[1].cleaned_data["plain"] is None


def test_money_field_required_and_initial():
    class Required(forms.Form):
        amount = MoneyField()

    assert Required({"amount": ""}).errors["amount"][0] == "This field is required."
    shown = str(Required(initial={"amount": 12_500_000})["amount"])
    assert 'value="12.5"' in shown and 'inputmode="decimal"' in shown and 'type="text"' in shown


def test_one_display_format(settings):
    settings.TOLLGATE_CURRENCY = "USD"
    cases = {7_500_000: "$7.50", 75_000: "$0.075", -45: "-$0.000045", 1_234_567_890: "$1,234.56789", 0: "$0.00",
             25 * MICRO: "$25.00"}
    for micro, shown in cases.items():
        assert format_money(micro, "USD") == money_display(micro) == shown
        # The template filter is the same function: a card and a table cannot disagree.
        assert Template("{% load billing_tags %}{{ v|money }}").render(Context({"v": micro})) == shown
    assert money_display(None) == "" and format_money(2 * MICRO, "CNY") == "¥2.00"
    assert [money_plain(m) for m in (12_500_000, -3 * MICRO, 1, 0)] == ["12.5", "-3", "0.000001", "0"]
