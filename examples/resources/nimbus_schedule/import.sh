# Import a schedule by its name (its Nomad job is nimbus-sched-<name>).
terraform import nimbus_schedule.nightly_report nightly-report
