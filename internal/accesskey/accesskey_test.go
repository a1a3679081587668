package accesskey

import "testing"

func TestNewKeysParseBackAndDiffer(t *testing.T) {
	id, secret, err := New()
	if err != nil {
		t.Fatal(err)
	}
	gotID, gotSecret, err := ParseToken(Token(id, secret))
	if err != nil || gotID != id || gotSecret != secret {
		t.Fatalf("token of %s does not parse back: %q %q %v", id, gotID, gotSecret, err)
	}
	id2, secret2, _ := New()
	if id2 == id || secret2 == secret {
		t.Fatal("two keys are the same")
	}
}

func TestParseTokenRefusesOtherShapes(t *testing.T) {
	id, secret, _ := New()
	for _, tok := range []string{"", id, id + ".", "." + secret, id + "." + secret + "x", "AKIA" + id[4:] + "." + secret, id + ":" + secret} {
		if _, _, err := ParseToken(tok); err == nil {
			t.Errorf("ParseToken(%q) accepted it", tok)
		}
	}
}

func TestPatterns(t *testing.T) {
	cases := []struct {
		patterns []string
		fn       string
		want     bool
	}{
		{[]string{"orders"}, "orders", true},
		{[]string{"orders"}, "orders-api", false},
		{[]string{"orders-*"}, "orders-api", true},
		{[]string{"orders-*"}, "billing", false},
		{[]string{"*"}, "anything", true},
		{[]string{"billing", "*-api"}, "orders-api", true},
		{nil, "orders", false},
		{[]string{"[a-z]*"}, "orders", false}, // refused pattern never matches
	}
	for _, c := range cases {
		if got := Matches(c.patterns, c.fn); got != c.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", c.patterns, c.fn, got, c.want)
		}
	}
	for _, bad := range []string{"", "a?", "[ab]", "a/b"} {
		if ValidPattern(bad) == "" {
			t.Errorf("ValidPattern(%q) accepted it", bad)
		}
	}
}
