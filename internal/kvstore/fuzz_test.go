package kvstore

import (
	"reflect"
	"testing"
)

// The gateway reads these records from Consul KV, where anyone with write
// on nimbus/ can put anything: decoding never panics, and what decodes
// encodes back to the same record.
func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte(`{"name":"f","timeout":"3s","idle_timeout":"5m","max_instances":2}`))
	f.Add([]byte(`{"id":"/api*","function":"f","path":"/api","match":"prefix"}`))
	f.Add([]byte(`{"name":"t","function":"f","prefix":"orders/","batch_size":10}`))
	f.Add([]byte(`{"id":"NIMBABC","secret":"s","enabled":true,"invoke":["orders-*"],"upload_artifacts":true}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DecodeFunction(b); err == nil {
			if back, err := DecodeFunction(r.Encode()); err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("function record does not round-trip: %v", err)
			}
		}
		if r, err := DecodeRoute(b); err == nil {
			if back, err := DecodeRoute(r.Encode()); err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("route does not round-trip: %v", err)
			}
		}
		if r, err := DecodeAccessKey(b); err == nil {
			if back, err := DecodeAccessKey(r.Encode()); err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("access key does not round-trip: %v", err)
			}
		}
		if r, err := DecodeKVTrigger(b); err == nil {
			if back, err := DecodeKVTrigger(r.Encode()); err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("trigger does not round-trip: %v", err)
			}
		}
		_, _ = DecodeLimits(b)
	})
}
