package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
)

// durationBetween checks that a string is a Go duration within [lo, hi].
func durationBetween(name string, lo, hi time.Duration) validator.String {
	return durationValidator{name: name, lo: lo, hi: hi}
}

type durationValidator struct {
	name   string
	lo, hi time.Duration
}

func (v durationValidator) Description(context.Context) string {
	return fmt.Sprintf("a duration from %s to %s", v.lo, v.hi)
}

func (v durationValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v durationValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	raw := req.ConfigValue.ValueString()
	d, err := time.ParseDuration(raw)
	switch {
	case err != nil:
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid "+v.name, fmt.Sprintf("%q is not a duration: write it like \"30s\" or \"5m\"", raw))
	case d < v.lo || d > v.hi:
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid "+v.name, fmt.Sprintf("%s is out of range: use %s to %s", raw, shortDuration(v.lo), shortDuration(v.hi)))
	}
}

// shortDuration prints 15m rather than 15m0s.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
