package model

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/cronexpr"
)

// Schedule runs a function on a cron expression or a rate.
type Schedule struct {
	Name     string
	Function string
	Cron     string // 5 fields, or 6 with seconds as Nomad allows
	Rate     string // "5m", "1h", "1d"
	TimeZone string
	Payload  string // JSON
	Enabled  bool
}

// CronSpec is the Nomad periodic spec: the cron as given, or the rate
// turned into cron.
func (s Schedule) CronSpec() (string, error) {
	if s.Cron != "" {
		return s.Cron, nil
	}
	return RateToCron(s.Rate)
}

// RateToCron turns a rate into cron: minutes that divide an hour, hours
// that divide a day, or one day.
func RateToCron(rate string) (string, error) {
	bad := &FieldError{"rate", fmt.Sprintf("%q is not a supported rate: use minutes that divide an hour (\"1m\", \"5m\", \"15m\", \"30m\"), hours that divide a day (\"1h\", \"6h\", \"12h\") or \"1d\"; write a cron expression for anything else", rate)}
	if rate == "1d" || rate == "24h" {
		return "0 0 * * *", nil
	}
	d, err := time.ParseDuration(rate)
	if err != nil || d <= 0 {
		return "", bad
	}
	switch {
	case d%time.Hour == 0 && 24%int(d/time.Hour) == 0:
		h := int(d / time.Hour)
		if h == 1 {
			return "0 * * * *", nil
		}
		return fmt.Sprintf("0 */%d * * *", h), nil
	case d < time.Hour && d%time.Minute == 0 && 60%int(d/time.Minute) == 0:
		m := int(d / time.Minute)
		if m == 1 {
			return "* * * * *", nil
		}
		return fmt.Sprintf("*/%d * * * *", m), nil
	}
	return "", bad
}

// Validate checks a schedule and returns FieldErrors, or nil.
func (s Schedule) Validate() error {
	var errs FieldErrors
	if e := ValidateName(s.Name); e != nil {
		errs = append(errs, e)
	}
	if e := ValidateTarget(s.Function); e != nil {
		errs = append(errs, e)
	}
	switch {
	case s.Cron != "" && s.Rate != "":
		errs = append(errs, &FieldError{"rate", "set either cron or rate, not both"})
	case s.Cron == "" && s.Rate == "":
		errs = append(errs, &FieldError{"cron", "set cron (for example \"0 3 * * *\") or rate (for example \"5m\")"})
	case s.Cron != "":
		if n := len(strings.Fields(s.Cron)); n < 5 || n > 6 {
			errs = append(errs, &FieldError{"cron", fmt.Sprintf("%q has %d fields; use 5 (minute hour day month weekday) or 6 with seconds first", s.Cron, n)})
		} else if _, err := cronexpr.Parse(s.Cron); err != nil {
			errs = append(errs, &FieldError{"cron", fmt.Sprintf("%q is not a valid cron expression: %v", s.Cron, err)})
		}
	default:
		if _, err := RateToCron(s.Rate); err != nil {
			errs = append(errs, err.(*FieldError)) //nolint:errorlint // RateToCron returns only *FieldError
		}
	}
	if s.TimeZone != "" {
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			errs = append(errs, &FieldError{"time_zone", fmt.Sprintf("%q is not a time zone: use an IANA name such as \"Europe/Berlin\" or \"UTC\"", s.TimeZone)})
		}
	}
	if s.Payload != "" && !json.Valid([]byte(s.Payload)) {
		errs = append(errs, &FieldError{"payload", "is not valid JSON; jsonencode() builds it from an HCL value"})
	}
	return errs.err()
}
