package provider

import (
	"context"
	"errors"
	"net/http"

	nomadapi "github.com/hashicorp/nomad/api"
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
	case isNotFound(err):
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
	if isNotFound(err) {
		return nil
	}
	return err
}

// isNotFound reports whether Nomad answered 404 Not Found. Only the status
// code counts: an error that merely mentions 404 (a connection error to an
// address holding "404", say) is not a missing job.
func isNotFound(err error) bool {
	// nomad/api returns UnexpectedResponseError as a value; accept a
	// pointer too in case a caller or a later version wraps one.
	var v nomadapi.UnexpectedResponseError
	if errors.As(err, &v) {
		return v.StatusCode() == http.StatusNotFound
	}
	var p *nomadapi.UnexpectedResponseError
	return errors.As(err, &p) && p != nil && p.StatusCode() == http.StatusNotFound
}
