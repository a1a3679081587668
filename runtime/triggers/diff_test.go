package triggers

import (
	"testing"

	consulapi "github.com/hashicorp/consul/api"
)

// A listing becomes change records against what the trigger delivered
// before: new keys INSERT, changed ones MODIFY with their old value, gone
// ones REMOVE, unchanged ones nothing; in modify order, removals last.
func TestDiffTurnsListingsIntoChanges(t *testing.T) {
	seen := newProgress()
	seen.Index = 10
	for _, k := range []string{"app/same", "app/changed", "app/gone"} {
		seen.add(k)
	}
	values := map[string][]byte{"app/changed": []byte("old"), "app/gone": []byte("bye")}
	pairs := consulapi.KVPairs{
		{Key: "app/changed", ModifyIndex: 12, Value: []byte("new")},
		{Key: "app/same", ModifyIndex: 9, Value: []byte("x")},
		{Key: "app/new", ModifyIndex: 11, Value: []byte{0xff, 0x00}},
	}
	got := diff(seen, values, pairs, 13, wants(nil))
	want := []ChangeRecord{
		{EventID: "app/new@11", EventName: "INSERT", Key: "app/new", ModifyIndex: 11, NewValue: "/wA=", Encoding: "base64"},
		{EventID: "app/changed@12", EventName: "MODIFY", Key: "app/changed", ModifyIndex: 12, NewValue: "new", OldValue: "old"},
		{EventID: "app/gone@13-removed", EventName: "REMOVE", Key: "app/gone", ModifyIndex: 13, OldValue: "bye"},
	}
	if len(got) != len(want) {
		t.Fatalf("diff = %+v\nwant %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d = %+v\nwant %+v", i, got[i], want[i])
		}
	}
	// A trigger that wants only deletes sees only the removal.
	if only := diff(seen, values, pairs, 13, wants([]string{"delete"})); len(only) != 1 || only[0].EventName != "REMOVE" {
		t.Errorf("a delete-only trigger got %+v", only)
	}
}
