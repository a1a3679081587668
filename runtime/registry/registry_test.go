package registry

import "testing"

// Only a function's own record and its versions' are function records.
func TestRecordKey(t *testing.T) {
	for rel, want := range map[string]string{
		"fn": "fn", "fn/versions/3": "fn:3", "fn/versions/03": "", "fn/versions/3/x": "", "fn/other": "", "/x": "",
	} {
		got, ok := recordKey(rel)
		if got != want || ok != (want != "") {
			t.Errorf("recordKey(%q) = %q, %v; want %q", rel, got, ok, want)
		}
	}
}
