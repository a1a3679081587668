package clients

import (
	"context"
	"fmt"
	"net/http"
	neturl "net/url"
	"strings"
)

// PrepareEventSource has the gateway check an event source against its
// broker before it is recorded (for NATS, the gateway creates or updates
// the source's durable consumer): the broker's refusal comes back as the
// error.
func (a Artifacts) PrepareEventSource(ctx context.Context, name string, record []byte) error {
	resp, err := a.request(ctx, http.MethodPut, a.eventSourceURL(name), record)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the gateway refused event source %s: %s", name, a.explain(resp))
	}
	return nil
}

// DeleteEventSource has the gateway remove a NATS source's durable
// consumer from stream (nothing for other sources).
func (a Artifacts) DeleteEventSource(ctx context.Context, name, stream string) error {
	url := a.eventSourceURL(name)
	if stream != "" {
		url += "?stream=" + neturl.QueryEscape(stream)
	}
	resp, err := a.request(ctx, http.MethodDelete, url, nil)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the gateway could not remove event source %s's consumer: %s", name, a.explain(resp))
	}
	return nil
}

func (a Artifacts) eventSourceURL(name string) string {
	return strings.TrimRight(a.BaseURL, "/") + "/v1/event-sources/" + neturl.PathEscape(name)
}
