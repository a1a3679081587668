package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/agents"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/packaging"
)

// scaleParallelism is OpenTofu's default -parallelism, which the floor's
// workers match.
const scaleParallelism = 10

// scaleResult is plan, apply and destroy of many functions, against the
// raw floor of the same Nomad work.
type scaleResult struct {
	functions, packageBytes             int
	floorApply, floorPlan, floorDestroy time.Duration
	tofuApply, tofuPlan, tofuDestroy    time.Duration
}

// planApplyAtScale applies n functions sharing one package with OpenTofu
// and the provider built from this checkout, as the deployer, then plans
// with no change and destroys them. The floor registers the same n jobs
// through Nomad's API with the same parallelism, waits until one
// instance of each passes its check (what the provider's canary proves)
// and scales each to 0, and purges them; a plan's floor is OpenTofu planning n terraform_data
// resources, which need no provider.
func planApplyAtScale(ctx context.Context, env *testenv.Env, gatewayURL, root, dir, src string, n int) (scaleResult, error) {
	r := scaleResult{functions: n}
	pkg, err := packaging.ZipDir(src)
	if err != nil {
		return r, err
	}
	r.packageBytes = len(pkg.Zip)

	fmt.Printf("bench: floor: registering %d jobs and proving one instance of each\n", n)
	store := clients.Artifacts{BaseURL: gatewayURL, Token: env.GatewayToken, HTTP: client}
	source, err := upload(ctx, store, pkg)
	if err != nil {
		return r, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("floor-%02d", i)
	}
	start := time.Now()
	if err := parallel(names, func(name string) error {
		f := model.Function{Name: name, Runtime: model.RuntimeProvided, MaxInstances: 1}
		job := nomadjob.Render(f, source, nomadjob.Options{})
		job.TaskGroups[0].Count = ptr(1)
		if _, _, err := env.Nomad.Jobs().Register(job, nil); err != nil {
			return err
		}
		if _, err := healthyInstanceURL(env, nomadjob.ServiceName(name)); err != nil {
			return err
		}
		// Then to 0, where a function with min_instances = 0 rests (and
		// the node holds no more than a few at once, as with canaries).
		return scaleTo(env, name, 0)
	}); err != nil {
		return r, err
	}
	r.floorApply = time.Since(start)
	start = time.Now()
	if err := parallel(names, func(name string) error {
		_, _, err := env.Nomad.Jobs().Deregister(nomadjob.JobID(name), true, nil)
		return err
	}); err != nil {
		return r, err
	}
	r.floorDestroy = time.Since(start)
	for _, name := range names {
		if err := waitGone(env, nomadjob.ServiceName(name)); err != nil {
			return r, err
		}
	}

	fmt.Printf("bench: OpenTofu: apply, plan and destroy of %d functions\n", n)
	tofu, err := newTofu(root, dir)
	if err != nil {
		return r, err
	}
	config := `
terraform {
  required_providers {
    nimbus = { source = "nimbus-faas/nimbus" }
  }
}
` + env.ProviderConfig(env.Principals.Deployer, gatewayURL) + fmt.Sprintf(`
resource "nimbus_function" "f" {
  count         = %d
  name          = "scale-${count.index}"
  runtime       = "provided"
  source        = %q
  max_instances = 1
}
`, n, src)
	para := fmt.Sprintf("-parallelism=%d", scaleParallelism)
	// The floor of a plan is OpenTofu's own work for as many resources
	// that need no provider: terraform_data, applied first.
	if err := tofu.write(fmt.Sprintf("resource \"terraform_data\" \"f\" {\n  count = %d\n  input = \"scale-${count.index}\"\n}\n", n)); err != nil {
		return r, err
	}
	if _, err := tofu.run(ctx, "apply", "-auto-approve", "-input=false", para); err != nil {
		return r, err
	}
	if r.floorPlan, err = tofu.run(ctx, "plan", "-input=false", "-detailed-exitcode", para); err != nil {
		return r, err
	}
	if _, err := tofu.run(ctx, "destroy", "-auto-approve", "-input=false", para); err != nil {
		return r, err
	}
	if err := tofu.write(config); err != nil {
		return r, err
	}
	if r.tofuApply, err = tofu.run(ctx, "apply", "-auto-approve", "-input=false", para); err != nil {
		return r, err
	}
	if r.tofuPlan, err = tofu.run(ctx, "plan", "-input=false", "-detailed-exitcode", para); err != nil {
		// -detailed-exitcode: 2 means the plan would change something.
		return r, fmt.Errorf("a plan right after the apply must show no change: %w", err)
	}
	if r.tofuDestroy, err = tofu.run(ctx, "destroy", "-auto-approve", "-input=false", para); err != nil {
		return r, err
	}
	// The provider's records must be gone with the jobs.
	keys, _, err := env.Consul.KV().Keys("nimbus/functions/scale-", "", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil || len(keys) > 0 {
		return r, fmt.Errorf("destroy left function records %v (%w)", keys, err)
	}
	return r, nil
}

// parallel runs fn for every name on scaleParallelism workers and
// returns the first error.
func parallel(names []string, fn func(string) error) error {
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for w := 0; w < scaleParallelism; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				if err := fn(name); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
				}
			}
		}()
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

// tofuRunner runs OpenTofu in a directory against the provider built from
// this checkout (dev_overrides: no registry, no init).
type tofuRunner struct {
	bin, dir string
	env      []string
}

func newTofu(root, dir string) (*tofuRunner, error) {
	bin, err := agents.Tofu.Path()
	if err != nil {
		return nil, err
	}
	providerDir := filepath.Join(dir, "provider")
	build := exec.Command("go", "build", "-o", filepath.Join(providerDir, "terraform-provider-nimbus"), ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the provider: %w: %s", err, out)
	}
	rc := filepath.Join(dir, "tofurc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`provider_installation {
  dev_overrides {
    "registry.opentofu.org/nimbus-faas/nimbus" = %q
  }
  direct {}
}
`, providerDir)), 0o600); err != nil {
		return nil, err
	}
	work := filepath.Join(dir, "tofu")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	return &tofuRunner{bin: bin, dir: work, env: append(os.Environ(),
		"TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1",
		// A cache of its own: the apply packages the source once, the plan
		// after it finds the digest, as a user's second run would.
		"NIMBUS_PACKAGE_CACHE_DIR="+filepath.Join(dir, "package-cache"))}, nil
}

// write replaces the configuration.
func (t *tofuRunner) write(config string) error {
	return os.WriteFile(filepath.Join(t.dir, "main.tf"), []byte(config), 0o600)
}

func (t *tofuRunner) run(ctx context.Context, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, t.bin, append(args, "-no-color")...)
	cmd.Dir, cmd.Env = t.dir, t.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("tofu %s: %w\n%s", strings.Join(args, " "), err, tail(string(out), 40))
	}
	return d, nil
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func formatScale(b *strings.Builder, r scaleResult) {
	if r.functions == 0 {
		return
	}
	fmt.Fprintf(b, "**Plan and apply at scale** (%d `nimbus_function`s sharing one %.1f MB Go package, parallelism %d; the floor does the same Nomad work through its API with as many workers):\n\n", r.functions, float64(r.packageBytes)/(1<<20), scaleParallelism)
	b.WriteString("| Step | Floor | OpenTofu with the provider | Ratio |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(b, "| Apply: register the jobs, one instance of each proven healthy, then at 0 | %s | %s | **%.2f** |\n", secs(r.floorApply), secs(r.tofuApply), ratio(r.tofuApply, r.floorApply))
	fmt.Fprintf(b, "| Plan with no change (floor: OpenTofu planning as many `terraform_data`) | %s | %s | **%.2f** |\n", secs(r.floorPlan), secs(r.tofuPlan), ratio(r.tofuPlan, r.floorPlan))
	fmt.Fprintf(b, "| Destroy: purge the jobs | %s | %s | **%.2f** |\n\n", secs(r.floorDestroy), secs(r.tofuDestroy), ratio(r.tofuDestroy, r.floorDestroy))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
