"""template.yaml and events/ stay true to the code: handlers resolve, settings exist, events parse."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import handlers.ingest as ingest
from devstack.lambda_context import LocalLambdaContext
from dropgate.config import Settings
from tests.conftest import REPO
from tests.unit.test_ingest_handler import FakeIngestor


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form intrinsics (!Ref, !Sub …) as plain data."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _intrinsic)


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((REPO / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506
    return loaded


def functions() -> dict[str, dict[str, Any]]:
    """Each function's properties as SAM sees them: its own over the template's Globals (environment
    variables merged one by one, as SAM merges maps)."""
    loaded = template()
    shared = loaded.get("Globals", {}).get("Function", {})
    found = {}
    for name, resource in loaded["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        own = resource["Properties"]
        variables = {**_variables(shared), **_variables(own)}
        found[name] = {**shared, **own, "Environment": {"Variables": variables}}
    return found


def _variables(properties: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = properties.get("Environment", {}).get("Variables", {})
    return variables


def test_both_functions_run_one_package_built_by_the_makefile() -> None:
    for name, props in functions().items():
        resource = template()["Resources"][name]
        assert resource["Metadata"]["BuildMethod"] == "makefile", name
        assert props["CodeUri"] == "." and props["Runtime"] == "python3.12" and props["Architectures"] == ["arm64"]
    targets = (REPO / "Makefile").read_text()
    for name in functions():
        assert f"build-{name}" in targets, f"sam build needs a make target build-{name}"


def setting_variables() -> set[str]:
    names = {f"DROPGATE_{field.upper()}" for field in Settings.model_fields if field != "kafka_bootstrap_servers"}
    return names | {"KAFKA_BOOTSTRAP_SERVERS"}


def test_every_handler_resolves_to_a_function() -> None:
    assert functions(), "template.yaml declares no function"
    for name, props in functions().items():
        module_name, _, attribute = props["Handler"].rpartition(".")
        handler = getattr(importlib.import_module(module_name), attribute, None)
        assert callable(handler), f"{name}: Handler {props['Handler']} does not resolve"


def test_template_sets_what_the_code_needs_and_nothing_it_does_not_read() -> None:
    required = {
        "KAFKA_BOOTSTRAP_SERVERS",
        "DROPGATE_TOPIC",
        "DROPGATE_BUCKET",
        "DROPGATE_LEDGER_TABLE",
        "DROPGATE_PARTNERS",
    }
    known = setting_variables()
    for name, props in functions().items():
        variables = set(props.get("Environment", {}).get("Variables", {}))
        assert required <= variables, f"{name} is missing {sorted(required - variables)}"
        ours = {v for v in variables if v.startswith(("DROPGATE_", "KAFKA_"))}
        assert ours <= known, f"{name} sets variables no code reads: {sorted(ours - known)}"


def test_the_registry_schema_starts_from_the_first_checked_in_version_and_the_functions_may_read_it() -> None:
    """Version 1 in the template never changes (CloudFormation would replace the schema, versions and
    all): it is the first version file, byte for byte; later versions come from `dropgate schema register`."""
    resources = template()["Resources"]
    schema = resources["EventSchema"]["Properties"]
    first = (REPO / "schemas" / "inventory.product-state.v1" / "1.json").read_text(encoding="utf-8")
    assert schema["SchemaDefinition"] == first
    assert (schema["DataFormat"], schema["Compatibility"]) == ("JSON", "BACKWARD")
    for name, props in functions().items():
        statements = [s["If"][1] for s in props["Policies"][0]["Statement"] if "If" in s]
        (read,) = [s for s in statements if s["Sid"] == "ReadEventSchema"]
        assert read["Action"] == ["glue:GetSchemaByDefinition", "glue:GetSchemaVersion"], name
    assert Settings(schema_registry="").schema_registry is None  # the template's "no registry"


@pytest.mark.parametrize("path", sorted((REPO / "events").glob("*.json")), ids=lambda p: p.name)
def test_every_sample_event_goes_through_the_handler(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = FakeIngestor(failing=set())
    monkeypatch.setattr(ingest, "lambda_ingestor", lambda context=None: core)
    response = ingest.handler(json.loads(path.read_text()), LocalLambdaContext())
    assert response.get("batchItemFailures", []) == []
    expected = {
        "s3-put.json": ["acme/inventory-2026-11-20.xml", "acme/inventory 2026-11-21.xml.gz"],
        "sqs-s3-put.json": ["acme/café inventory.xml"],
        "eventbridge-object-created.json": ["acme/inventory-2026-11-20.xml"],
    }.get(path.name, [])
    assert [ref.key for ref in core.seen] == expected
    assert all(ref.bucket == "dropgate-drops" for ref in core.seen)


@pytest.mark.parametrize("path", sorted((REPO / "events" / "reprocess").glob("*.json")), ids=lambda p: p.name)
def test_every_reprocess_event_goes_through_the_reprocess_handler(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dropgate.held import HeldDeletion
    from dropgate.held_deletions import Decided
    from dropgate.ingest.outcome import FileOutcome
    from dropgate.reprocess import ReprocessResult
    from dropgate.storage import ObjectRef
    from handlers import reprocess

    calls: list[tuple[str, Any]] = []

    class FakeReprocessor:
        def one(self, ref: ObjectRef, **flags: Any) -> ReprocessResult:
            calls.append(("one", (ref, flags)))
            return ReprocessResult(ref, FileOutcome(ref=ref, status="published", events=1), dry_run=flags["dry_run"])

        def bulk(self, **options: Any) -> list[ReprocessResult]:
            calls.append(("bulk", options))
            return []

        def decide_deletions(self, ref: ObjectRef, *, approve: bool, deadline: float | None) -> Decided:
            assert deadline is not None  # the function's remaining time, passed on
            calls.append(("deletions", (ref, approve)))
            held = HeldDeletion(
                "initech", str(ref), ref.bucket or "", ref.key, None, None, 0, 1, 1, "{productId}", "g/1", ""
            )
            return Decided(held, "approved" if approve else "rejected")

    monkeypatch.setattr(reprocess, "lambda_reprocessor", lambda context=None: FakeReprocessor())
    payload = json.loads(path.read_text())
    response = reprocess.handler(payload, LocalLambdaContext())
    assert "results" in response or "deletions" in response
    ((kind, detail),) = calls
    if "deletions" in payload:
        ref, approve = detail
        assert kind == "deletions" and ref.key == payload["key"] and approve == (payload["deletions"] == "approve")
        assert response["deletions"]["deletions"] == ("approved" if approve else "rejected")
    elif "key" in payload:
        ref, flags = detail
        assert kind == "one" and ref.key == payload["key"] and flags["dry_run"] == payload.get("dryRun", False)
        assert flags["deadline"] is not None
    else:
        assert kind == "bulk" and detail["partner"] == payload["partner"] and detail["since"] == payload["since"]
        assert detail["deadline"] is not None


def _choose(choices: list[dict[str, Any]], default: str, key: str) -> str:
    """Step Functions' Choice for the rules this state machine uses (StringMatches, Or)."""
    import fnmatch

    def holds(rule: dict[str, Any]) -> bool:
        if "Or" in rule:
            return any(holds(inner) for inner in rule["Or"])
        return fnmatch.fnmatchcase(key, rule["StringMatches"])

    return next((choice["Next"] for choice in choices if holds(choice)), default)


@pytest.mark.parametrize(
    ("key", "state"),
    [
        ("quarantine/files/acme/a.xml", "Reprocess"),
        ("quarantine/files/acme/a.xml.diagnostics.json.xml", "Reprocess"),  # a copy, whatever it is called
        ("quarantine/diagnostics/acme/a.xml.diagnostics.json", "SkipSidecar"),
        ("quarantine/resolved/files/acme/a.xml", "SkipResolved"),
        ("quarantine/resolved/diagnostics/acme/a.xml.diagnostics.json", "SkipResolved"),
        ("quarantine/acme/a.xml", "Reprocess"),  # the first layout
        ("quarantine/acme/a.xml.diagnostics.json", "SkipSidecar"),
        ("acme/a.xml.gz", "Reprocess"),
        ("acme/readme.txt", "SkipNotADrop"),
    ],
)
def test_the_bulk_reprocess_picks_copies_and_skips_sidecars_and_resolved_files(key: str, state: str) -> None:
    machine = json.loads((REPO / "statemachine" / "reprocess.asl.json").read_text())
    processors = [
        step["ItemProcessor"]["States"]["IsDrop"]
        for step in machine["States"].values()
        if step.get("Type") == "Map" and "IsDrop" in step.get("ItemProcessor", {}).get("States", {})
    ]
    assert len(processors) == 2  # the prefix and the keys mode
    for choice in processors:
        assert _choose(choice["Choices"], choice["Default"], key) == state


# -- Alarms and the dashboard -----------------------------------------------------------------------
def alarms() -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template()["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def alarm_metrics(props: dict[str, Any]) -> list[dict[str, Any]]:
    """(Namespace, MetricName, Dimensions) of an alarm, whether on one metric or on metric math."""
    if "MetricName" in props:
        return [props]
    return [query["MetricStat"]["Metric"] for query in props["Metrics"] if "MetricStat" in query]


def dashboard() -> dict[str, Any]:
    """The dashboard's body as CloudWatch gets it, with every ${...} of the !Sub filled with a stand-in."""
    import re

    (body,) = [
        r["Properties"]["DashboardBody"]["Sub"][0]
        for r in template()["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    loaded: dict[str, Any] = json.loads(re.sub(r"\$\{[^}]+\}", "300", body))
    return loaded


def dashboard_metric_names(namespace: str) -> set[str]:
    import re

    found = set()
    for widget in dashboard()["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if line[0] == namespace:
                found.add(line[1])
            elif isinstance(line[0], dict) and "SEARCH(" in line[0]["expression"]:
                assert f"{{{namespace}," in line[0]["expression"] or namespace != "dropgate"
                found |= set(re.findall(r'MetricName="([A-Za-z]+)"', line[0]["expression"]))
    return found


def emitted_metric_names(capsys: pytest.CaptureFixture[str]) -> set[str]:
    """Every metric name handlers/observability.py emits, from its EMF output for every kind of file."""
    from dropgate.ingest.outcome import FileOutcome
    from dropgate.storage import ObjectRef
    from handlers import observability

    ref = ObjectRef("b", "acme/a.xml")
    capsys.readouterr()
    observability.file_started(ref, "sqs")
    observability.file_failed(ref, RuntimeError("broker down"), partner="acme")
    for status in ("published", "quarantined", "duplicate", "ignored"):
        observability.file_started(ref, "sqs")
        outcome = FileOutcome(ref=ref, status=status, events=2, invalid=1, stale=1, held_deletes=3)  # type: ignore[arg-type]
        observability.file_finished(outcome)
    for decision in ("approved", "rejected"):
        observability.deletions_decided(decision, "acme")
    names = set()
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names |= {metric["Name"] for metric in directive["Metrics"]}
    return names


def test_every_metric_the_alarms_and_the_dashboard_watch_is_one_the_code_emits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt metric name or a dimension the code does not send makes an alarm that never fires."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    emitted = emitted_metric_names(capsys)
    watched = dashboard_metric_names("dropgate")
    for name, props in alarms().items():
        for metric in alarm_metrics(props):
            if metric["Namespace"] == "dropgate":
                watched.add(metric["MetricName"])
                # The service dimension set, as the functions send it (POWERTOOLS_SERVICE_NAME).
                assert metric["Dimensions"] == [{"Name": "service", "Value": "dropgate"}], name
    assert watched, "no alarm or widget watches a dropgate metric"
    assert watched <= emitted, f"watched but never emitted: {sorted(watched - emitted)}"
    env = next(iter(functions().values()))["Environment"]["Variables"]
    assert (env["POWERTOOLS_SERVICE_NAME"], env["POWERTOOLS_METRICS_NAMESPACE"]) == ("dropgate", "dropgate")


def test_the_dashboard_shows_what_the_operator_needs() -> None:
    assert {
        "FilesPublished",
        "FilesQuarantined",
        "FilesFailed",
        "EventsPublished",
        "PublishSeconds",
    } <= dashboard_metric_names("dropgate")
    assert {"ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible"} <= dashboard_metric_names("AWS/SQS")
    (alarm_widget,) = [w for w in dashboard()["widgets"] if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) == len(alarms())


def test_a_failed_file_counts_as_an_ingest_error_not_only_a_crashed_invocation() -> None:
    watched = {(m["Namespace"], m["MetricName"]) for m in alarm_metrics(alarms()["IngestErrorsAlarm"])}
    assert watched == {("AWS/Lambda", "Errors"), ("dropgate", "FilesFailed")}
    failing = alarms()["FilesFailingAlarm"]
    assert (failing["MetricName"], failing["EvaluationPeriods"], failing["DatapointsToAlarm"]) == ("FilesFailed", 3, 3)


def test_the_queue_age_alarm_is_two_function_timeouts_not_the_dead_letter_queues_hours() -> None:
    props = alarms()["IngestQueueAgeAlarm"]
    ((queue,),) = [m["Dimensions"] for m in alarm_metrics(props)]
    assert queue["Value"] == {"GetAtt": "IngestQueue.QueueName"}
    (expression,) = [q["Expression"] for q in props["Metrics"] if "Expression" in q]
    assert expression == {"Sub": "age / ${IngestTimeoutSeconds}"}
    assert (props["Threshold"], props["ComparisonOperator"]) == (2, "GreaterThanThreshold")
    # Two timeouts stay well inside one visibility timeout (at least 6 timeouts): the alarm fires
    # before a failed file is even tried again, let alone before it reaches the DLQ.
    parameters = template()["Parameters"]
    assert parameters["QueueVisibilityTimeoutSeconds"]["Default"] >= 6 * parameters["IngestTimeoutSeconds"]["Default"]
    assert any(
        m["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and m["Dimensions"] == [{"Name": "QueueName", "Value": {"GetAtt": "IngestDeadLetterQueue.QueueName"}}]
        for p in alarms().values()
        for m in alarm_metrics(p)
    )


def test_every_alarm_notifies_and_has_a_runbook_line_in_the_operating_docs() -> None:
    readme = (REPO / "docs" / "operating.md").read_text(encoding="utf-8")
    for name, props in alarms().items():
        assert props["AlarmActions"] == {"If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
        assert f"`{name}`" in readme, f"docs/operating.md says nothing about {name}"
