package provider

import (
	"context"

	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
)

// nomadWrite and nomadQuery carry the provider's Nomad namespace and region.
func (d *providerData) nomadWrite(ctx context.Context) *nomadapi.WriteOptions {
	return (&nomadapi.WriteOptions{Namespace: d.Settings.Nomad.Namespace, Region: d.Settings.Nomad.Region}).WithContext(ctx)
}

func (d *providerData) nomadQuery(ctx context.Context) *nomadapi.QueryOptions {
	return (&nomadapi.QueryOptions{Namespace: d.Settings.Nomad.Namespace, Region: d.Settings.Nomad.Region}).WithContext(ctx)
}

// liveJob reads a Nomad job; found is false when the job is gone or
// stopped (deleted outside Terraform), and the resource should leave the
// state.
func (d *providerData) liveJob(ctx context.Context, jobID string) (job *nomadapi.Job, found bool, err error) {
	job, _, err = d.Nomad.Jobs().Info(jobID, d.nomadQuery(ctx))
	switch {
	case clients.NomadNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	case job.Stop != nil && *job.Stop:
		return job, false, nil
	}
	return job, true, nil
}

// purgeJob deregisters and purges a Nomad job; a job that is already gone
// is not an error.
func (d *providerData) purgeJob(ctx context.Context, jobID string) error {
	_, _, err := d.Nomad.Jobs().Deregister(jobID, true, d.nomadWrite(ctx))
	if clients.NomadNotFound(err) {
		return nil
	}
	return err
}
