package provider

import (
	"context"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// readRecord reads and decodes a KV record; found is false when the key is
// gone (deleted outside Terraform), and the resource should leave the state.
func readRecord[T any](ctx context.Context, c *consulapi.Client, key string, decode func([]byte) (T, error)) (rec T, found bool, err error) {
	pair, _, err := c.KV().Get(key, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil || pair == nil {
		return rec, false, err
	}
	rec, err = decode(pair.Value)
	return rec, err == nil, err
}

// readKV is the Read of a resource kept in one KV record, at key(id): fill
// refreshes the state from the record, and a record gone from KV takes the
// resource out of the state. what names the resource in errors.
func readKV[M, R any](ctx context.Context, c *consulapi.Client, req resource.ReadRequest, resp *resource.ReadResponse,
	what string, key func(id string) string, decode func([]byte) (R, error), fill func(*M, R)) {
	var state M
	var id types.String
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("id"), &id)...)
	if resp.Diagnostics.HasError() {
		return
	}
	rec, found, err := readRecord(ctx, c, key(id.ValueString()), decode)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the "+what+" from Consul KV", err.Error())
		return
	}
	if !found {
		resp.State.RemoveResource(ctx)
		return
	}
	fill(&state, rec)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// deleteKV is the Delete of a resource kept in KV: it deletes the keys
// named by the resource's id.
func deleteKV(ctx context.Context, c *consulapi.Client, req resource.DeleteRequest, resp *resource.DeleteResponse,
	what string, keys ...func(id string) string) {
	var id types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("id"), &id)...)
	if resp.Diagnostics.HasError() {
		return
	}
	wq := (&consulapi.WriteOptions{}).WithContext(ctx)
	for _, key := range keys {
		k := key(id.ValueString())
		del := c.KV().Delete
		if strings.HasSuffix(k, "/") { // a prefix: everything under it
			del = c.KV().DeleteTree
		}
		if _, err := del(k, wq); err != nil {
			resp.Diagnostics.AddError("Cannot delete the "+what+" from Consul KV", err.Error())
			return
		}
	}
}
