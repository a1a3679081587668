package model

import "testing"

func TestValidateTarget(t *testing.T) {
	for target, valid := range map[string]bool{
		"fn": true, "fn:1": true, "fn:42": true, "fn:live": true, "fn:$LATEST": true, "fn:blue-green_2": true,
		"fn:01": false, "fn:0": false, "fn:": false, "fn:a.b": false, "fn:a:b": false, "fn:$latest": false,
		"": false, ":live": false, "Fn:live": false, "fn_x:1": false,
	} {
		e := ValidateTarget(target)
		if (e == nil) != valid {
			t.Errorf("ValidateTarget(%q) = %v; want valid %v", target, e, valid)
		}
		if e != nil && e.Field != "function" {
			t.Errorf("ValidateTarget(%q) blames %q; want the function attribute", target, e.Field)
		}
	}
}
