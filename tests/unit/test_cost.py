"""The cost view (issue 31 §3): status.monthlyCost, the gauge per kind, the plan's cost line, the setting."""

from __future__ import annotations

import argparse

import pytest

from controller import metrics, settings
from controller.api.models import REGISTRY_CREDENTIAL
from controller.reconcile import cost


@pytest.mark.parametrize("status,price,expected", [
    ({}, 0.40, "0.00"),
    ({"secretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:regaccess/a/b-AbCdEf"}, 0.40, "0.40"),
    ({"secretArn": "arn:x"}, 0.05, "0.05"),
    ({"secretArn": "arn:x"}, 0.0, "0.00"),
])
def test_monthly_cost_counts_the_secret_at_the_price(status, price, expected):
    assert cost.monthly_cost(cost.secrets_kept(status), price) == expected


def test_plan_note_says_before_and_after():
    assert cost.plan_note(None, 1, 0.40).startswith("cost: $0.00/month -> $0.40/month")
    assert cost.plan_note({"monthlyCost": "0.40", "secretArn": "arn:x"}, 1, 0.40).startswith(
        "cost: $0.40/month -> $0.40/month")


def test_the_gauge_sums_per_kind_and_forgets():
    costs = metrics.MonthlyCosts()
    costs.set("RegistryCredential", "u1", 0.40)
    costs.set("RegistryCredential", "u2", 0.40)
    costs.set("RegistryCredential", "u2", 0.40)  # a resync counts once
    assert costs.total("RegistryCredential") == pytest.approx(0.80)
    assert metrics.MONTHLY_COST.labels("RegistryCredential")._value.get() == pytest.approx(0.80)
    costs.forget("RegistryCredential", "u1")
    assert metrics.MONTHLY_COST.labels("RegistryCredential")._value.get() == pytest.approx(0.40)


def test_printer_column():
    assert ("Cost/Month", "string", ".status.monthlyCost") in REGISTRY_CREDENTIAL.printer_columns


def test_price_setting_default_env_and_bad_input():
    parser = argparse.ArgumentParser()
    settings.add_run_arguments(parser, environ={})
    assert settings.settings_from_args(parser.parse_args([]), environ={}).secret_monthly_price == 0.40
    parser = argparse.ArgumentParser()
    settings.add_run_arguments(parser, environ={"REGACCESS_SECRET_MONTHLY_PRICE": "0.5"})
    assert settings.settings_from_args(parser.parse_args([]), environ={}).secret_monthly_price == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--secret-monthly-price", "-1"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--secret-monthly-price", "cheap"])
