package model

import "testing"

func TestQualifiers(t *testing.T) {
	for q, valid := range map[string]bool{
		"": true, "$LATEST": true, "1": true, "42": true, "live": true, "blue-green_2": true, "v1": true,
		"-3": true, "0": false, "01": false, "a.b": false, "$latest": false, "has space": false,
		"x" + string(make([]byte, 128)): false,
	} {
		if err := ValidateQualifier(q); (err == nil) != valid {
			t.Errorf("ValidateQualifier(%q) = %v; want valid %v", q, err, valid)
		}
	}
	for _, c := range []struct{ in, name, q string }{
		{"fn", "fn", ""}, {"fn:3", "fn", "3"}, {"fn:live", "fn", "live"}, {"fn:$LATEST", "fn", "$LATEST"},
	} {
		if name, q := SplitQualified(c.in); name != c.name || q != c.q {
			t.Errorf("SplitQualified(%q) = %q, %q; want %q, %q", c.in, name, q, c.name, c.q)
		}
		if got := Qualify(c.name, c.q); got != c.in {
			t.Errorf("Qualify(%q, %q) = %q; want %q", c.name, c.q, got, c.in)
		}
	}
}
