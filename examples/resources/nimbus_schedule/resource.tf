# Every night at 03:00 Berlin time.
resource "nimbus_schedule" "nightly_report" {
  name      = "nightly-report"
  function  = nimbus_function.report.name
  cron      = "0 3 * * *"
  time_zone = "Europe/Berlin"
  payload   = jsonencode({ kind = "daily" })
}

# Every five minutes; set enabled = false to pause it without losing it.
resource "nimbus_schedule" "poll" {
  name     = "poll-feeds"
  function = nimbus_function.poller.name
  rate     = "5m"
  enabled  = true
}
