# Spreads a fleet's schedules over their interval: every instance runs `*/N * * * *`, but each at its own minute
# offset within the N minutes, taken from a stable hash of its instance ID. Without it every exporter of the fleet
# reaches the gateway in the same minute (docs/capacity.md, Schedule spread).
#
#   offset   = (first 8 hex digits of sha256(key), as a number) mod N
#   schedule = the minutes offset, offset + N, ... < 60 as a list, then the other four fields unchanged
#
# The same key always gives the same schedule; different keys spread evenly over the N offsets. Only a minute
# field of the form */N with N dividing 60 is spread; any other schedule is returned as written. Cron has no
# seconds, so the spread is by whole minutes. Pure: no providers, no resources (tests run it with the real
# Terraform, offline: tests/terraform/test_schedule_spread.py).

variable "schedule" {
  description = "5-field cron expression as configured, e.g. */5 * * * *."
  type        = string
}

variable "key" {
  description = "Stable identifier the offset is derived from (the instance ID)."
  type        = string
}

locals {
  fields     = split(" ", trimspace(var.schedule))
  step_match = regexall("^\\*/([0-9]+)$", local.fields[0])
  step       = length(local.step_match) == 1 ? tonumber(local.step_match[0][0]) : 0
  spreadable = length(local.fields) == 5 && local.step > 1 && local.step <= 60 && (local.step > 0 ? 60 % local.step == 0 : false)

  offset  = local.spreadable ? parseint(substr(sha256(var.key), 0, 8), 16) % local.step : 0
  minutes = local.spreadable ? [for slot in range(60 / local.step) : local.offset + slot * local.step] : []
}

output "schedule" {
  description = "The schedule to use: the minute list shifted by the key's offset, or the input unchanged."
  value       = local.spreadable ? join(" ", concat([join(",", local.minutes)], slice(local.fields, 1, 5))) : var.schedule
}

output "offset_minutes" {
  description = "Minutes after each interval boundary this key runs at (0 when the schedule is not spread)."
  value       = local.offset
}
