package host

import (
	"strings"
	"testing"
)

// A qualifier that no version or alias could be never reaches the
// handler's ARN.
func TestQualifierOf(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "3": "3", "live": "live", "$LATEST": "$LATEST", "blue_green-2": "blue_green-2",
		"a:b": "", "a/b": "", "a b": "", strings.Repeat("x", 129): "",
	} {
		if got := qualifierOf(in); got != want {
			t.Errorf("qualifierOf(%q) = %q; want %q", in, got, want)
		}
	}
}
