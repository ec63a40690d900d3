"""Every option of `regaccess run` is settable by flag and by REGACCESS_<OPTION>, and documented."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller.settings import RUN_OPTIONS, add_run_arguments, settings_from_args

README = Path(__file__).resolve().parents[2] / "README.md"


def parse(argv, env=None):
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, env or {})
    return settings_from_args(parser.parse_args(argv), env or {})


def test_defaults():
    s = parse([])
    assert s.all_namespaces and s.namespaces == ()
    assert s.drift_interval == 300.0 and s.metrics_port == 8080 and s.cluster_id == "default"


def test_env_then_flag_precedence():
    env = {"REGACCESS_DRIFT_INTERVAL": "60", "REGACCESS_CLUSTER_ID": "prod"}
    assert parse([], env).drift_interval == 60.0
    assert parse(["--drift-interval", "5"], env).drift_interval == 5.0
    assert parse([], env).cluster_id == "prod"


@pytest.mark.parametrize("argv, env, shard", [
    ([], {}, ""),
    (["--shard", "a"], {}, "a"),
    ([], {"REGACCESS_SHARD": "team-b.2"}, "team-b.2"),
    (["--shard", "a"], {"REGACCESS_SHARD": "b"}, "a"),
], ids=["default-shard", "flag", "env", "flag-wins"])
def test_shard(argv, env, shard):
    assert parse(argv, env).shard == shard


def test_namespaces():
    assert parse(["-n", "a", "-n", "b"]).namespaces == ("a", "b")
    assert parse([], {"REGACCESS_NAMESPACE": "a, b"}).namespaces == ("a", "b")
    assert parse(["-A"], {"REGACCESS_NAMESPACE": "a"}).all_namespaces
    with pytest.raises(SystemExit):
        parse(["-n", "a", "-A"])


@pytest.mark.parametrize("argv", [["--drift-interval", "0"], ["--metrics-port", "70000"], ["--log-level", "LOUD"],
                                  ["--workers", "0"], ["--max-concurrent-drift-checks", "0"],
                                  ["--shard", "a,b"], ["--shard", "-a"], ["--shard", "x" * 64],
                                  ["--source-check-interval", "2"], ["--kube-connections", "-1"]],
                         ids=["zero-interval", "bad-port", "bad-level", "no-workers", "no-drift-checks",
                              "shard-not-a-label-value", "shard-starts-with-dash", "shard-too-long",
                              "the-removed-polling-option", "negative-connections"])
def test_bad_values_are_rejected(argv):
    with pytest.raises(SystemExit):
        parse(argv)


@pytest.mark.parametrize("env", [{"REGACCESS_DRIFT_INTERVAL": "soon"}, {"REGACCESS_DRIFT_INTERVAL": "-1"},
                                 {"REGACCESS_LOG_LEVEL": "LOUD"}], ids=["not-a-number", "negative", "bad-choice"])
def test_bad_env_value_is_a_clear_usage_error(env, capsys):
    with pytest.raises(SystemExit) as info:
        parse([], env)
    assert info.value.code == 2
    assert next(iter(env)) in capsys.readouterr().err


@pytest.mark.parametrize("option", RUN_OPTIONS, ids=[o.flags[-1] for o in RUN_OPTIONS])
def test_every_option_is_in_the_readme(option):
    text = README.read_text()
    assert option.flags[-1] in text, f"README does not document {option.flags[-1]}"
    assert option.env in text, f"README does not document {option.env}"


def test_all_namespaces_from_env_wins_over_namespace_env():
    assert parse([], {"REGACCESS_NAMESPACE": "a", "REGACCESS_ALL_NAMESPACES": "true"}).all_namespaces
    assert parse([], {"REGACCESS_NAMESPACE": "a", "REGACCESS_ALL_NAMESPACES": "false"}).namespaces == ("a",)


Q1, Q2 = "https://sqs.eu-west-1.amazonaws.com/111122223333/a", "https://sqs.us-east-1.amazonaws.com/111122223333/b"


@pytest.mark.parametrize("argv, env, urls, interval", [
    ([], {}, (), 300.0),
    (["--drift-events-queue-url", Q1], {}, (Q1,), 3600.0),
    (["--drift-events-queue-url", Q1, "--drift-events-queue-url", Q2], {}, (Q1, Q2), 3600.0),
    (["--drift-events-queue-url", f"{Q1},{Q2}"], {}, (Q1, Q2), 3600.0),
    ([], {"REGACCESS_DRIFT_EVENTS_QUEUE_URL": f"{Q1}, {Q2}"}, (Q1, Q2), 3600.0),
    (["--drift-events-queue-url", Q2], {"REGACCESS_DRIFT_EVENTS_QUEUE_URL": Q1}, (Q2,), 3600.0),
    ([], {"REGACCESS_DRIFT_EVENTS_QUEUE_URL": Q1, "REGACCESS_DRIFT_BACKSTOP_INTERVAL": "900"}, (Q1,), 900.0),
    ([], {"REGACCESS_DRIFT_EVENTS_QUEUE_URL": ""}, (), 300.0),
], ids=["off", "flag", "repeated", "comma", "env", "flag-wins", "backstop", "empty-env"])
def test_drift_event_queues_and_the_backstop_interval(argv, env, urls, interval):
    settings = parse(argv, env)
    assert settings.drift_events_queue_urls == urls and settings.check_interval == interval


def test_a_queue_url_that_is_no_url_stops_startup():
    with pytest.raises(SystemExit):
        parse(["--drift-events-queue-url", "my-queue"])
    with pytest.raises(SystemExit):
        parse([], {"REGACCESS_DRIFT_EVENTS_QUEUE_URL": "my-queue"})


@pytest.mark.parametrize("bad", ["", "*", "prod*", "a?", "a/b", "-x", "x" * 101, "with space"])
def test_a_cluster_id_that_would_widen_the_iam_policy_or_collide_is_refused(bad):
    from controller import settings as s

    with pytest.raises(argparse.ArgumentTypeError):
        s.cluster_id(bad)


@pytest.mark.parametrize("good", ["default", "prod-eu-1", "c1", "team.prod:eu=1", "x" * 100])
def test_a_cluster_id_of_tag_value_characters_is_taken(good):
    from controller import settings as s

    assert s.cluster_id(good) == good
