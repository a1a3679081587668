package provider

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/rollout"
)

const defaultTimeout = 10 * time.Minute

func (r *functionResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan functionModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultTimeout)
	resp.Diagnostics.Append(diags...)
	r.deployAndSave(ctx, timeout, &plan, nil, &resp.State, &resp.Diagnostics)
}

func (r *functionResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state functionModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Update(ctx, defaultTimeout)
	resp.Diagnostics.Append(diags...)
	r.deployAndSave(ctx, timeout, &plan, &state, &resp.State, &resp.Diagnostics)
}

// deployAndSave deploys plan (over prior, on update) within timeout and
// records it in the state once deployed.
func (r *functionResource) deployAndSave(ctx context.Context, timeout time.Duration, plan, prior *functionModel, state *tfsdk.State, diags *diag.Diagnostics) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	diags.Append(r.deploy(ctx, plan, prior)...)
	if diags.HasError() {
		return
	}
	diags.Append(state.Set(ctx, plan)...)
}

func (r *functionResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state functionModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := state.Name.ValueString()
	if err := r.purgeVersionJobs(ctx, name); err != nil {
		resp.Diagnostics.AddError("Cannot delete the function's published versions", err.Error())
		return
	}
	for _, id := range []string{nomadjob.JobID(name), nomadjob.CanaryPrefix + name} {
		if err := r.data.purgeJob(ctx, id); err != nil {
			resp.Diagnostics.AddError("Cannot delete the function's Nomad job", fmt.Sprintf("purging %s: %v", id, err))
			return
		}
	}
	kv := r.data.Consul.KV()
	wq := (&consulapi.WriteOptions{}).WithContext(ctx)
	if _, err := kv.Delete(kvstore.FunctionKey(name), wq); err != nil {
		resp.Diagnostics.AddError("Cannot delete the function's Consul KV record", err.Error())
		return
	}
	if _, err := kv.DeleteTree(kvstore.FunctionKey(name)+"/", wq); err != nil {
		resp.Diagnostics.AddError("Cannot delete the function's Consul KV keys", err.Error())
	}
}

func (r *functionResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state functionModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := state.Name.ValueString()
	job, found, err := r.data.liveJob(ctx, nomadjob.JobID(name))
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the function's Nomad job", err.Error())
		return
	}
	if !found {
		// Deleted or stopped outside Terraform: plan to create it again.
		resp.State.RemoveResource(ctx)
		return
	}
	if err := fromJob(&state, job); err != nil {
		resp.Diagnostics.AddError("Cannot read the function's Nomad job", fmt.Sprintf("%s does not look like a Nimbus function job: %v", *job.ID, err))
		return
	}
	pair, _, err := r.data.Consul.KV().Get(kvstore.FunctionKey(name), (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the function's Consul KV record", err.Error())
		return
	}
	if pair == nil {
		// The record is gone: an empty idle_timeout makes the plan write it again.
		state.IdleTimeout = types.StringValue("")
	} else if rec, err := kvstore.DecodeFunction(pair.Value); err == nil {
		if d, err := time.ParseDuration(rec.IdleTimeout); err == nil {
			state.IdleTimeout = sameDuration(state.IdleTimeout, d)
		}
		state.ReservedConcurrency = optionalInt(rec.ReservedConcurrency)
	}
	versions, err := publishedVersions(ctx, r.data.Consul.KV(), name)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the function's published versions in Consul KV", err.Error())
		return
	}
	state.Version = types.StringValue(latestVersion(versions))
	state.QualifiedInvokeURL = types.StringValue(r.invokeURL(model.Qualify(name, state.Version.ValueString())))
	if state.Publish.IsNull() { // imported
		state.Publish, state.VersionGracePeriod = types.BoolValue(false), types.StringValue("24h")
	}
	state.ID = types.StringValue(name)
	state.JobID = types.StringValue(*job.ID)
	state.InvokeURL = types.StringValue(r.invokeURL(name))
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// fromJob refreshes the state from what Nomad runs, so changes made
// outside Terraform show up in the plan.
func fromJob(m *functionModel, job *nomadapi.Job) error {
	if len(job.TaskGroups) != 1 || len(job.TaskGroups[0].Tasks) != 1 {
		return errors.New("want one group with one task")
	}
	tg := job.TaskGroups[0]
	task := tg.Tasks[0]
	env := task.Env
	m.JobVersion = types.Int64Value(int64(deref(job.Version)))
	m.Name = types.StringValue(env[protocol.EnvFunctionName])
	m.Runtime = types.StringValue(env[protocol.EnvRuntime])
	m.Handler = types.StringValue(env[protocol.EnvHandler])
	if d := job.Meta[nomadjob.MetaDescription]; d != "" || !m.Description.IsNull() {
		m.Description = types.StringValue(d)
	}
	if task.Resources != nil {
		m.MemoryMB = types.Int64Value(int64(deref(task.Resources.MemoryMB)))
		m.CPUMHz = types.Int64Value(int64(deref(task.Resources.CPU)))
	}
	if d, err := time.ParseDuration(env[protocol.EnvTimeout]); err == nil {
		m.Timeout = sameDuration(m.Timeout, d)
	}
	if c, err := strconv.Atoi(env[protocol.EnvConcurrency]); err == nil {
		m.Concurrency = types.Int64Value(int64(c))
	}
	switch env[protocol.EnvBillingGranularity] {
	case "100ms":
		m.BillingGranularity = types.StringValue("100ms")
	default:
		m.BillingGranularity = types.StringValue("1ms")
	}
	if tg.Scaling != nil {
		m.MinInstances = types.Int64Value(deref(tg.Scaling.Min))
		m.MaxInstances = types.Int64Value(deref(tg.Scaling.Max))
	}
	user, _ := protocol.FunctionVariables(env)
	m.Environment = environmentValue(user, m.Environment.IsNull())
	refs, err := protocol.SecretRefs(env)
	if err != nil {
		return fmt.Errorf("job %s: %w", *job.ID, err)
	}
	m.Secrets = secretsValue(refs, m.Secrets.IsNull())
	// Jobs from before egress existed had host networking and no choice.
	m.Egress = types.StringValue(model.EgressPublic)
	if e := job.Meta[nomadjob.MetaEgress]; e != "" {
		m.Egress = types.StringValue(e)
	}
	if sha := job.Meta[nomadjob.MetaSource]; sha != "" {
		m.SourceSHA256 = types.StringValue(sha)
	}
	m.ArtifactURLExpires = types.StringValue(urlExpiry(nomadjob.ArtifactSource(job)))
	return nil
}

// urlExpiry is when a signed artifact URL expires (RFC 3339), "" for any
// other URL.
func urlExpiry(url string) string {
	if t, ok := clients.SignedURLExpiry(url); ok {
		return t.UTC().Format(time.RFC3339)
	}
	return ""
}

// deploy packages and uploads the code, proves the new version with a
// canary when the task changes, records the function in KV, registers the
// job and waits for min_instances healthy instances.
func (r *functionResource) deploy(ctx context.Context, plan *functionModel, prior *functionModel) diag.Diagnostics {
	var diags diag.Diagnostics
	f, d := plan.spec(ctx)
	diags.Append(d...)
	if err := f.Validate(); err != nil {
		diags.AddError("Invalid function", err.Error())
	}
	if diags.HasError() {
		return diags
	}

	src, d := r.source(ctx, plan)
	diags.Append(d...)
	if diags.HasError() {
		return diags
	}
	opts := nomadjob.Options{Namespace: r.data.Settings.Nomad.Namespace, Region: r.data.Settings.Nomad.Region, HostNetwork: r.data.Settings.HostNetwork}
	job := nomadjob.Render(f, src, opts)

	existing, _, err := r.data.Nomad.Jobs().Info(*job.ID, r.data.nomadQuery(ctx))
	switch {
	case clients.NomadNotFound(err):
		existing = nil
	case err != nil:
		diags.AddError("Cannot reach Nomad", err.Error())
		return diags
	case prior == nil && existing.Meta[nomadjob.MetaManaged] != nomadjob.ManagedBy && (existing.Stop == nil || !*existing.Stop):
		diags.AddAttributeError(path.Root("name"), "A Nomad job with this name exists",
			fmt.Sprintf("Job %s exists and is not managed by Nimbus. Choose another function name, or stop and purge that job.", *job.ID))
		return diags
	}

	src = keepSignedURL(src, existing)
	job = nomadjob.Render(f, src, opts)

	if err := r.checkSecretsExist(ctx, f); err != nil {
		diags.AddAttributeError(path.Root("secrets"), "A secret's Nomad Variable does not exist", err.Error())
		return diags
	}

	if prior == nil || !taskUnchanged(*prior, *plan) {
		if err := r.runCanary(ctx, f, src, opts); err != nil {
			diags.AddError("The new version of function "+f.Name+" did not become healthy",
				err.Error()+"\n\nThe function's running version was left as it was.")
			return diags
		}
	}

	rec := nomadjob.Record(f, src, opts, int(plan.ReservedConcurrency.ValueInt64()))
	// An update whose deployment fails puts the running version's record
	// back.
	var prevRecord *consulapi.KVPair
	if prior != nil {
		if prevRecord, _, err = r.data.Consul.KV().Get(kvstore.FunctionKey(f.Name), (&consulapi.QueryOptions{}).WithContext(ctx)); err != nil {
			diags.AddError("Cannot read the function's record in Consul KV", err.Error())
			return diags
		}
	}
	if _, err := r.data.Consul.KV().Put(&consulapi.KVPair{Key: kvstore.FunctionKey(f.Name), Value: rec.Encode()},
		(&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		diags.AddError("Cannot write the function's record to Consul KV", err.Error())
		return diags
	}

	// Keep the count the gateway scaled to; a fresh job starts at min.
	// Running instances are replaced blue/green, never all at once.
	registered, err := rollout.Register(ctx, r.data.Nomad, job, rollout.Options{PreserveCounts: existing != nil})
	if err != nil {
		if prevRecord != nil {
			// The running version stays: so does its record.
			_, _ = r.data.Consul.KV().Put(prevRecord, (&consulapi.WriteOptions{}).WithContext(context.WithoutCancel(ctx)))
		}
		diags.AddError("The function's new version was not deployed", err.Error())
		return diags
	}
	if f.MinInstances > 0 {
		if err := r.waitHealthy(ctx, f, registered.Version); err != nil {
			diags.AddError("The function's instances did not become healthy", err.Error())
			return diags
		}
	}
	plan.JobVersion = types.Int64Value(int64(registered.Version))
	if publishes(prior, *plan) {
		n, err := r.publish(ctx, f, src, opts)
		if err != nil {
			diags.AddError("The function was deployed, but its new version was not published",
				err.Error()+"\n\nThe function's $LATEST runs the new code. Apply again to publish the version.")
			return diags
		}
		plan.Version = types.StringValue(strconv.Itoa(n))
	} else if prior != nil {
		plan.Version = prior.Version
	} else {
		plan.Version = types.StringValue(model.Latest)
	}
	plan.QualifiedInvokeURL = types.StringValue(r.invokeURL(model.Qualify(f.Name, plan.Version.ValueString())))
	if grace, err := time.ParseDuration(plan.VersionGracePeriod.ValueString()); err == nil {
		if err := r.collectVersions(ctx, f.Name, grace); err != nil {
			diags.AddWarning("Unreferenced versions were not collected",
				fmt.Sprintf("Removing the published versions of %s that nothing references failed: %v. The next apply tries again.", f.Name, err))
		}
	}
	plan.JobID = types.StringValue(*job.ID)
	plan.ID = types.StringValue(f.Name)
	plan.Handler = types.StringValue(f.Handler)
	plan.CPUMHz = types.Int64Value(int64(f.EffectiveCPUMHz()))
	plan.SourceSHA256 = types.StringValue(src.SHA256)
	plan.InvokeURL = types.StringValue(r.invokeURL(f.Name))
	plan.ArtifactURLExpires = types.StringValue(urlExpiry(src.URL))
	return diags
}

// urlRenewal is how long before its expiry an artifact URL is renewed.
const urlRenewal = 30 * 24 * time.Hour

// keepSignedURL keeps the running job's signed URL for the same code while
// it stays valid for a while: a new URL is a new artifact to Nomad, which
// would replace every instance for a change that does not touch them (an
// instance count, the idle timeout). Within urlRenewal of its expiry any
// apply of the function renews it.
func keepSignedURL(src nomadjob.Source, existing *nomadapi.Job) nomadjob.Source {
	old := nomadjob.ArtifactSource(existing)
	if old == "" || src.SHA256 == "" || !strings.Contains(old, src.SHA256) {
		return src
	}
	if expires, ok := clients.SignedURLExpiry(old); ok && time.Until(expires) > urlRenewal {
		if _, fresh := clients.SignedURLExpiry(src.URL); fresh {
			src.URL = old
		}
	}
	return src
}

// checkSecretsExist makes sure every variable the function's secrets name
// exists, so that instances do not wait forever for it at start. It lists
// paths only: the deployer never reads a secret's value (nor can it check
// the keys, which nimbus-host reports by name if one is missing).
func (r *functionResource) checkSecretsExist(ctx context.Context, f model.Function) error {
	if len(f.Secrets) == 0 {
		return nil
	}
	q := r.data.nomadQuery(ctx)
	metas, _, err := r.data.Nomad.Variables().PrefixList(model.SecretsRoot(f.Name), q)
	if err != nil {
		return fmt.Errorf("cannot list the function's Nomad Variables: %w", err)
	}
	exists := map[string]bool{}
	for _, m := range metas {
		exists[m.Path] = true
	}
	names := make([]string, 0, len(f.Secrets))
	for name := range f.Secrets {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if ref := f.Secrets[name]; !exists[ref.Path] {
			return fmt.Errorf("secret %s names Nomad Variable %s, which does not exist in namespace %s. Create it first: nomad var put %s %s=<value>",
				name, ref.Path, namespaceOrDefault(r.data.Settings.Nomad.Namespace), ref.Path, ref.Key)
		}
	}
	return nil
}

// taskUnchanged reports whether only settings outside the task changed
// (instance counts, idle timeout), which need no canary.
func taskUnchanged(a, b functionModel) bool {
	return a.Runtime.Equal(b.Runtime) && a.Handler.Equal(b.Handler) && a.MemoryMB.Equal(b.MemoryMB) &&
		a.CPUMHz.Equal(b.CPUMHz) && a.Timeout.Equal(b.Timeout) && a.Environment.Equal(b.Environment) && a.Secrets.Equal(b.Secrets) &&
		a.Concurrency.Equal(b.Concurrency) && a.BillingGranularity.Equal(b.BillingGranularity) &&
		a.SourceSHA256.Equal(b.SourceSHA256) && a.SourceURL.Equal(b.SourceURL) && a.Egress.Equal(b.Egress)
}

// source makes the code available to instances: uploads a local source to
// the gateway (only when the store lacks it), whose signed URL nimbus-host
// fetches, or passes a source_url through to Nomad's artifact block.
func (r *functionResource) source(ctx context.Context, plan *functionModel) (nomadjob.Source, diag.Diagnostics) {
	var diags diag.Diagnostics
	if plan.Source.IsNull() {
		return nomadjob.Source{URL: plan.SourceURL.ValueString(), SHA256: plan.SourceSHA256.ValueString()}, diags
	}
	pkg, err := r.packages().Package(plan.Source.ValueString())
	if err != nil {
		diags.AddAttributeError(path.Root("source"), "Cannot package source", err.Error())
		return nomadjob.Source{}, diags
	}
	if !plan.SourceSHA256.IsUnknown() && plan.SourceSHA256.ValueString() != pkg.SHA256 {
		diags.AddAttributeError(path.Root("source"), "Source changed since plan",
			fmt.Sprintf("The plan packaged sha256:%s but the source now packages to sha256:%s. Run plan again.", plan.SourceSHA256.ValueString(), pkg.SHA256))
		return nomadjob.Source{}, diags
	}
	if r.data.Artifacts == nil {
		diags.AddAttributeError(path.Root("source"), "No gateway to upload to",
			"Uploading source needs the Nimbus gateway: set gateway_url in the provider block or NIMBUS_GATEWAY_URL.")
		return nomadjob.Source{}, diags
	}
	if _, err := r.data.Artifacts.Ensure(ctx, pkg.SHA256, pkg.Zip); err != nil {
		diags.AddError("Cannot upload the function's code", err.Error())
		return nomadjob.Source{}, diags
	}
	// Nomad clients fetch the code with a signed URL, valid for the
	// gateway's -artifact-url-ttl and renewed by every apply.
	url, _, err := r.data.Artifacts.SignedURL(ctx, pkg.SHA256)
	if err != nil {
		diags.AddError("Cannot get a signed URL for the function's code", err.Error())
		return nomadjob.Source{}, diags
	}
	return nomadjob.Source{URL: url, SHA256: pkg.SHA256, FromStore: true}, diags
}
