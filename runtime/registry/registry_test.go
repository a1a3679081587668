package registry

import (
	"log/slog"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

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

// One bad record never stops the others, and is named in the log: one
// that is not JSON, and one stored under another record's key.
func TestDecodeLogsAndSkipsBadRecords(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	good := kvstore.AsyncConfig{Function: "orders", MaxRetries: 1}
	stray := kvstore.AsyncConfig{Function: "billing"}
	pairs := consulapi.KVPairs{
		{Key: kvstore.AsyncKey("orders"), Value: good.Encode()},
		{Key: kvstore.AsyncKey("broken"), Value: []byte("{")},
		{Key: kvstore.AsyncKey("elsewhere"), Value: stray.Encode()},
	}
	got := Decode(pairs, kvstore.DecodeAsync, func(at string, a kvstore.AsyncConfig) (string, error) {
		return Keyed(kvstore.AsyncKey, a.Function, at)
	}, log, "asynchronous invocation config")
	if len(got) != 1 || got["orders"].MaxRetries != 1 {
		t.Errorf("Decode = %v, want only orders", got)
	}
	for _, key := range []string{kvstore.AsyncKey("broken"), kvstore.AsyncKey("elsewhere")} {
		if !strings.Contains(logged.String(), key) {
			t.Errorf("the log does not name the bad record %s:\n%s", key, logged.String())
		}
	}
}
