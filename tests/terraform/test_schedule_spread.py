"""The fleet's export schedules spread over their interval: terraform/modules/schedule_spread, run by Terraform.

docs/capacity.md (Schedule spread) states the rule: offset = first 8 hex digits of sha256(instance ID) mod N, and
the schedule runs at offset, offset + N, ... within each hour. The module is provider-free, so the real Terraform
evaluates it here, offline, for many instance IDs at once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import terraform_checks as tc
import terraform_runner as tf
from terraform_checks import only

pytestmark = tf.needs_terraform

FLEET = [f"3f1c2a9e-6b0d-4c43-9a57-{index:012d}" for index in range(100)]


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("spread")
    shutil.copytree(tc.TERRAFORM_DIR / "modules" / "schedule_spread", directory / "schedule_spread")
    (directory / "main.tf").write_text(
        """
variable "ids" {
  type = list(string)
}
variable "schedule" {
  type = string
}
module "spread" {
  for_each = toset(var.ids)
  source   = "./schedule_spread"
  schedule = var.schedule
  key      = each.value
}
output "schedules" {
  value = { for id, m in module.spread : id => m.schedule }
}
output "offsets" {
  value = { for id, m in module.spread : id => m.offset_minutes }
}
""",
        encoding="utf-8",
    )
    tf.init(directory)
    return directory


def _evaluate(directory: Path, schedule: str, ids: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    (directory / "test.auto.tfvars.json").write_text(json.dumps({"ids": ids, "schedule": schedule}))
    applied = tf.run(directory, "apply", "-auto-approve", "-input=false", "-no-color", "-lock=false")
    assert applied.ok, applied.output
    outputs = tf.outputs(directory)
    return outputs["schedules"], outputs["offsets"]


def _documented_offset(instance_id: str, step: int) -> int:
    return int(hashlib.sha256(instance_id.encode()).hexdigest()[:8], 16) % step


def _minutes(field: str) -> list[int]:
    return [int(value) for value in field.split(",")]


def test_different_instance_ids_spread_over_the_interval(spread: Path) -> None:
    schedules, offsets = _evaluate(spread, "*/5 * * * *", FLEET)
    counts = Counter(offsets.values())
    assert sorted(counts) == [0, 1, 2, 3, 4], "every minute of the interval is used"
    assert max(counts.values()) <= 30 and min(counts.values()) >= 10, counts  # 100 instances over 5 minutes
    assert len(set(schedules.values())) == 5
    for instance_id, offset in offsets.items():
        assert offset == _documented_offset(instance_id, 5), instance_id


def test_the_same_instance_id_always_gets_the_same_schedule(spread: Path) -> None:
    first, _ = _evaluate(spread, "*/5 * * * *", FLEET[:3])
    again, _ = _evaluate(spread, "*/5 * * * *", FLEET[:3])
    assert first == again
    assert first[FLEET[0]] == _evaluate(spread, "*/5 * * * *", [FLEET[0]])[0][FLEET[0]]


@pytest.mark.parametrize("step", [2, 5, 10, 15, 30])
def test_the_spread_schedule_is_a_valid_cron_with_the_same_interval(spread: Path, step: int) -> None:
    schedules, offsets = _evaluate(spread, f"*/{step} 9-17 * * 1-5", FLEET[:20])
    for instance_id, schedule in schedules.items():
        fields = schedule.split(" ")
        assert len(fields) == 5 and fields[1:] == ["9-17", "*", "*", "1-5"], schedule
        minutes = _minutes(fields[0])
        assert minutes == list(range(offsets[instance_id], 60, step)), schedule
        assert all(0 <= minute <= 59 for minute in minutes) and len(minutes) == 60 // step
        assert 0 <= offsets[instance_id] < step


@pytest.mark.parametrize("schedule", ["0 * * * *", "*/7 * * * *", "* * * * *", "*/1 * * * *", "15,45 * * * *"])
def test_schedules_that_are_not_every_n_minutes_are_kept_as_written(spread: Path, schedule: str) -> None:
    schedules, offsets = _evaluate(spread, schedule, FLEET[:5])
    assert set(schedules.values()) == {schedule}
    assert set(offsets.values()) == {0}


def test_the_export_scheduler_job_uses_the_instance_spread() -> None:
    config = tc.load_configuration()
    job = config.resource("google_cloud_scheduler_job", "job")
    assert job["schedule"] == "${local.schedules[each.key]}"
    assert config.locals["schedules"]["export"] == "${module.export_schedule.schedule}"
    text = (tc.TERRAFORM_DIR / "scheduler.tf").read_text(encoding="utf-8")
    block = text[text.index('module "export_schedule"') :]
    assert 'source = "./modules/schedule_spread"' in block
    assert "schedule = var.export_function.schedule" in block and "key      = var.instance_id" in block
    assert only(config.resource("google_cloud_scheduler_job", "job")["http_target"])["http_method"] == "POST"
