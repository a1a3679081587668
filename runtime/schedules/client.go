package schedules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

// ScheduledEvent is what a scheduled invocation delivers, shaped like an
// EventBridge scheduled event so Lambda handlers for schedules work as they
// are.
type ScheduledEvent struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Time       string          `json:"time"`
	Resources  []string        `json:"resources"`
	Schedule   string          `json:"schedule"`
	Detail     json.RawMessage `json:"detail"`
}

// ScheduledRun is one launch of a schedule.
type ScheduledRun struct {
	GatewayURL string
	Function   string
	Schedule   string
	Payload    string // JSON, may be empty
	// LaunchID identifies the launch (Nomad's child job id), so a retried
	// delivery carries the same event id and handlers can deduplicate. It
	// is also the run's credential: the gateway confirms it with Nomad.
	LaunchID string
	// Namespace is the launch's Nomad namespace.
	Namespace string
	Launched  time.Time
}

// Event builds the scheduled event.
func (r ScheduledRun) Event() ([]byte, error) {
	detail := json.RawMessage(`{}`)
	if strings.TrimSpace(r.Payload) != "" {
		if !json.Valid([]byte(r.Payload)) {
			return nil, fmt.Errorf("the schedule's payload is not valid JSON")
		}
		detail = json.RawMessage(r.Payload)
	}
	return json.Marshal(ScheduledEvent{
		Version: "0", ID: r.LaunchID, DetailType: "Scheduled Event", Source: "nimbus.schedule",
		Time: r.Launched.UTC().Format(time.RFC3339), Resources: []string{"nimbus:schedule/" + r.Schedule},
		Schedule: r.Schedule, Detail: detail,
	})
}

// RetryNotStarted retries a delivery only when the function provably never
// ran it: the connection could not be made, or the gateway answered 429 or
// 503 marked as not started. Anything else is final, a timeout (504) and a
// function's failure included: retrying them would run a function that may
// not be idempotent again.
func RetryNotStarted(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return true, nil
		}
		return false, err // the request may have reached the gateway
	}
	notStarted := resp.Header.Get(protocol.HeaderNotStarted) == "true"
	return notStarted && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable), nil
}

// DeliveryPolicy is how hard a scheduled run tries: about a minute of
// retries, so that a gateway restart does not lose the tick, and only of
// what never started.
var DeliveryPolicy = clients.RetryPolicy{MaxRetries: 8, WaitMin: time.Second, WaitMax: 15 * time.Second, DialTimeout: 5 * time.Second, CheckRetry: RetryNotStarted}

// Deliver asks the gateway to run the launch, with client, built with
// DeliveryPolicy (or a faster copy of it in tests). The gateway reads the
// event from the launch's job in Nomad.
func (r ScheduledRun) Deliver(ctx context.Context, client *http.Client) error {
	if _, err := r.Event(); err != nil {
		return err
	}
	body, _ := json.Marshal(scheduledRunRequest{Launch: r.LaunchID, Namespace: r.Namespace})
	url := strings.TrimRight(r.GatewayURL, "/") + ScheduledRunPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("invoking %s through %s: %w", r.Function, r.GatewayURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("invoking %s: the gateway answered %s: %s", r.Function, resp.Status, answer)
	}
	if resp.Header.Get(protocol.HeaderFunctionError) != "" {
		return fmt.Errorf("function %s failed (%s; its output is in its logs)", r.Function, answer)
	}
	return nil
}

// LaunchTime reads the launch time from a periodic child job's id
// ("<parent>/periodic-<unix seconds>").
func LaunchTime(childID string) time.Time {
	if i := strings.LastIndex(childID, "/periodic-"); i >= 0 {
		if sec, err := strconv.ParseInt(childID[i+len("/periodic-"):], 10, 64); err == nil {
			return time.Unix(sec, 0)
		}
	}
	return time.Now()
}
