package provider

import (
	"context"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// namespaceOrDefault names the Nomad namespace an empty one stands for.
func namespaceOrDefault(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// reservations reads the functions' reserved_concurrency in a namespace
// from KV, leaving out one function (the one being planned).
func reservations(ctx context.Context, c *consulapi.Client, namespace, except string) (map[string]int, error) {
	pairs, _, err := c.KV().List(kvstore.FunctionsPrefix, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range pairs {
		rec, err := kvstore.DecodeFunction(p.Value)
		if err != nil || rec.Name == except {
			continue
		}
		if namespaceOrDefault(rec.Namespace) == namespace && rec.ReservedConcurrency > 0 {
			out[rec.Name] = rec.ReservedConcurrency
		}
	}
	return out, nil
}

// limitsFor reads a namespace's limits from KV, or the defaults.
func limitsFor(ctx context.Context, c *consulapi.Client, namespace string) (kvstore.Limits, error) {
	pair, _, err := c.KV().Get(kvstore.LimitsKey(namespace), (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return kvstore.Limits{}, err
	}
	if pair == nil {
		return kvstore.Limits{Namespace: namespace, MaxConcurrency: kvstore.DefaultMaxConcurrency}, nil
	}
	return kvstore.DecodeLimits(pair.Value)
}
