package provider

import (
	"context"
	"fmt"
	"sort"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

var (
	_ resource.ResourceWithConfigure   = (*accessKeyResource)(nil)
	_ resource.ResourceWithImportState = (*accessKeyResource)(nil)
)

func newAccessKeyResource() resource.Resource { return &accessKeyResource{} }

// accessKeyResource is nimbus_access_key: a credential the gateway accepts,
// as a SigV4 key pair or a bearer token, and what it may do.
type accessKeyResource struct {
	withProviderData
}

type accessKeyModel struct {
	ID              types.String `tfsdk:"id"`
	Description     types.String `tfsdk:"description"`
	Enabled         types.Bool   `tfsdk:"enabled"`
	Invoke          types.Set    `tfsdk:"invoke"`
	UploadArtifacts types.Bool   `tfsdk:"upload_artifacts"`
	ReadOperations  types.Bool   `tfsdk:"read_operations"`
	Keepers         types.Map    `tfsdk:"keepers"`
	Secret          types.String `tfsdk:"secret"`
	BearerToken     types.String `tfsdk:"bearer_token"`
}

func (r *accessKeyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_access_key"
}

func (r *accessKeyResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "An access key for the Nimbus gateway, as `aws_iam_access_key` is one for AWS: an `id` and a `secret` " +
			"that sign requests with SigV4 (configure an AWS SDK or the AWS CLI with them), or, joined, a `bearer_token` for " +
			"`Authorization: Bearer` and `x-api-key`. The key may invoke the functions its `invoke` patterns name, and optionally " +
			"upload function packages and read operational data. The gateway watches the keys in Consul KV " +
			"(`nimbus/access-keys/`), so creating, changing, disabling or deleting a key takes effect within a second.\n\n" +
			"The secret is stored in Consul KV, where the gateway needs it to verify signatures, and in the Terraform state: " +
			"keep the state in an encrypted backend, and restrict `nimbus/access-keys/` to the deployer and the gateway (the shipped Consul policies do).\n\n" +
			"To rotate a key without a gap, change a value in `keepers` with `lifecycle { create_before_destroy = true }`: " +
			"the new key exists before the old one is deleted, so clients can move over.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed: true,
				MarkdownDescription: "The access key id, like an AWS access key id: `NIMB` and 16 characters. It names the key in SigV4 " +
					"credentials (`aws_access_key_id`) and in the gateway's logs; it is not secret.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"description": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "What the key is for, shown to operators reading Consul KV. It is not secret: do not put credentials in it.",
			},
			"enabled": schema.BoolAttribute{
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(true),
				MarkdownDescription: "Whether the gateway accepts the key. Default `true`. Setting `false` refuses it (401 " +
					"`UnrecognizedClientException`) within a second, in place: the id and secret stay, so setting `true` again " +
					"restores the key without handing out a new secret.",
			},
			"invoke": schema.SetAttribute{
				ElementType: types.StringType,
				Optional:    true,
				MarkdownDescription: "Functions the key may invoke and describe: function names, or patterns where `*` matches any run " +
					"of characters (`orders-*`, `*`). Patterns match function names only: aliases and versions do not exist yet. " +
					"Other functions answer 403 `AccessDeniedException`, whether or not they exist. Unset: no function.",
				Validators: []validator.Set{setvalidator.ValueStringsAre(functionPatternValidator{})},
			},
			"upload_artifacts": schema.BoolAttribute{
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
				MarkdownDescription: "Whether the key may upload and read function packages. Default `false`. The key the provider " +
					"itself uses (its `gateway_token`) needs this; keys of clients that only invoke should not have it, since " +
					"uploading code is deploying code.",
			},
			"read_operations": schema.BoolAttribute{
				Optional:            true,
				Computed:            true,
				Default:             booldefault.StaticBool(false),
				MarkdownDescription: "Whether the key may read the gateway's `/metrics` and `/v1/usage`, as a monitoring or billing system does. Default `false`.",
			},
			"keepers": schema.MapAttribute{
				ElementType: types.StringType,
				Optional:    true,
				MarkdownDescription: "Arbitrary values that, when any changes, rotate the key: a new id and secret replace it. " +
					"Use `lifecycle { create_before_destroy = true }` so that the new key exists before the old one is deleted. " +
					"Setting keepers on a key that had none (such as a key just imported, since keepers live only in the Terraform " +
					"state) records them without rotating; `terraform apply -replace` rotates any key.",
				PlanModifiers: []planmodifier.Map{mapplanmodifier.RequiresReplaceIf(rotateOnKeepers,
					"Changing a value rotates the key, unless the key had no keepers yet.",
					"Changing a value rotates the key, unless the key had no keepers yet.")},
			},
			"secret": schema.StringAttribute{
				Computed:  true,
				Sensitive: true,
				MarkdownDescription: "The secret access key (`aws_secret_access_key` in SigV4 credentials), returned once, at creation, " +
					"like `aws_iam_access_key`'s. It is never read back from Consul: after `terraform import` it is null; rotate the " +
					"key (change `keepers`) to get a secret into the state.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"bearer_token": schema.StringAttribute{
				Computed:  true,
				Sensitive: true,
				MarkdownDescription: "The key as one token, `<id>.<secret>`, for `Authorization: Bearer <token>` and for `x-api-key` " +
					"on routes with `authorization = \"API_KEY\"`; also what the provider's `gateway_token` takes. Null after import, like `secret`.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
		},
	}
}

// rotateOnKeepers replaces the key when keepers that were set change. A key
// without keepers in its state, notably one just imported (keepers are not
// in Consul), takes its first keepers in place: rotating there would break
// every client of a key that Terraform merely started managing.
func rotateOnKeepers(_ context.Context, req planmodifier.MapRequest, resp *mapplanmodifier.RequiresReplaceIfFuncResponse) {
	resp.RequiresReplace = !req.StateValue.IsNull()
}

// functionPatternValidator checks an invoke pattern at plan time with the
// same rules the gateway matches by, so a pattern the gateway would ignore
// never reaches it.
type functionPatternValidator struct{}

func (functionPatternValidator) Description(context.Context) string {
	return "a function name, or a pattern where * matches any run of characters"
}

func (v functionPatternValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (functionPatternValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if reason := accesskey.ValidPattern(req.ConfigValue.ValueString()); reason != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid function pattern",
			reason+". Patterns match function names (aliases and versions do not exist yet): write a name such as \"orders-api\", or use * for any run of characters, such as \"orders-*\" or \"*\".")
	}
}

// record is the access key the model describes, with the given id and
// secret, which the model holds only after creation.
func (m accessKeyModel) record(ctx context.Context, id, secret string) (kvstore.AccessKey, diag.Diagnostics) {
	invoke, diags := setStrings(ctx, m.Invoke)
	// Sorted, so that the record does not change with the set's order.
	sort.Strings(invoke)
	return kvstore.AccessKey{
		ID: id, Secret: secret, Description: m.Description.ValueString(), Enabled: m.Enabled.ValueBool(),
		Invoke: invoke, UploadArtifacts: m.UploadArtifacts.ValueBool(), ReadOperations: m.ReadOperations.ValueBool(),
	}, diags
}

func (r *accessKeyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.create)
}

func (r *accessKeyResource) create(ctx context.Context, m *accessKeyModel) diag.Diagnostics {
	id, secret, err := accesskey.New()
	if err != nil {
		return saveFailed("access key", err)
	}
	rec, diags := m.record(ctx, id, secret)
	if diags.HasError() {
		return diags
	}
	// Index 0 writes only if the key does not exist: an existing key, and
	// the clients that use it, are never overwritten.
	written, _, err := r.data.Consul.KV().CAS(&consulapi.KVPair{Key: kvstore.AccessKeyKey(id), Value: rec.Encode(), ModifyIndex: 0},
		(&consulapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return append(diags, saveFailed("access key", fmt.Errorf("writing the access key to Consul KV: %w", err))...)
	}
	if !written {
		// 80 random bits make this all but impossible; retrying makes a new id.
		return append(diags, saveFailed("access key", fmt.Errorf("an access key with the new id %s already exists in Consul KV, which it never overwrites: run terraform apply again to make another id", id))...)
	}
	m.ID = types.StringValue(id)
	m.Secret = types.StringValue(secret)
	m.BearerToken = types.StringValue(accesskey.Token(id, secret))
	return diags
}

// Read refreshes what the key may do from Consul. The secret never comes
// from Consul: the state keeps the one it got at creation, or none after
// an import.
func (r *accessKeyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	readKV(ctx, r.data.Consul, req, resp, "access key", kvstore.AccessKeyKey, kvstore.DecodeAccessKey, func(state *accessKeyModel, k kvstore.AccessKey) {
		// An unset description and an empty one are the same record: keep
		// whichever the configuration uses.
		if k.Description != "" || !state.Description.IsNull() {
			state.Description = types.StringValue(k.Description)
		}
		state.Enabled = types.BoolValue(k.Enabled)
		switch {
		case len(k.Invoke) > 0:
			state.Invoke = stringSet(k.Invoke)
		case state.Invoke.IsNull():
			// Stays null: unset and empty are the same record.
		default:
			state.Invoke = stringSet(nil)
		}
		state.UploadArtifacts = types.BoolValue(k.UploadArtifacts)
		state.ReadOperations = types.BoolValue(k.ReadOperations)
	})
}

// Update rewrites the record in place, with the secret already in Consul:
// the id, the secret and the clients using them stay valid.
func (r *accessKeyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	saveModel(ctx, req.Plan, &resp.State, &resp.Diagnostics, r.update)
}

func (r *accessKeyResource) update(ctx context.Context, m *accessKeyModel) diag.Diagnostics {
	id := m.ID.ValueString()
	kv := r.data.Consul.KV()
	pair, _, err := kv.Get(kvstore.AccessKeyKey(id), (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return saveFailed("access key", fmt.Errorf("reading the access key %s from Consul KV, for its secret: %w", id, err))
	}
	if pair == nil {
		return saveFailed("access key", fmt.Errorf("the access key %s is no longer in Consul KV (%s): it was deleted outside Terraform since the plan. "+
			"Run terraform apply again: the refresh will notice and create a new key, with a new id and secret", id, kvstore.AccessKeyKey(id)))
	}
	current, err := kvstore.DecodeAccessKey(pair.Value)
	if err != nil {
		return saveFailed("access key", fmt.Errorf("the access key %s in Consul KV is unreadable (%w): rotate it (change keepers, or terraform apply -replace) to write a new one", id, err))
	}
	rec, diags := m.record(ctx, id, current.Secret)
	if diags.HasError() {
		return diags
	}
	// Written only if unchanged since read, so that a key deleted or
	// rewritten meanwhile is not resurrected or overwritten.
	written, _, err := kv.CAS(&consulapi.KVPair{Key: kvstore.AccessKeyKey(id), Value: rec.Encode(), ModifyIndex: pair.ModifyIndex},
		(&consulapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return append(diags, saveFailed("access key", fmt.Errorf("writing the access key to Consul KV: %w", err))...)
	}
	if !written {
		return append(diags, saveFailed("access key", fmt.Errorf("the access key %s changed or was deleted in Consul KV while it was being updated: run terraform apply again", id))...)
	}
	return diags
}

func (r *accessKeyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	deleteKV(ctx, r.data.Consul, req, resp, "access key", kvstore.AccessKeyKey)
}

// ImportState takes a key's id; Read fills in the rest, except the secret
// and the bearer token, which are never read back and stay null.
func (r *accessKeyResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !accesskey.ValidID(req.ID) {
		resp.Diagnostics.AddError("Invalid access key id",
			fmt.Sprintf("%q is not an access key id. Ids are %s followed by 16 characters A-Z and 2-7, like %sABCDEFGHIJKLMNOP; "+
				"list the existing ones with: consul kv get -keys %s", req.ID, accesskey.IDPrefix, accesskey.IDPrefix, kvstore.AccessKeysPrefix))
		return
	}
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
