package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
)

// A principal that may register services in Consul registers its own
// server under a function's service name, once with a made-up id and once
// with an id that names the function's real allocation. Neither gets a
// single request.
func TestRogueRegistrationGetsNoTraffic(t *testing.T) {
	env, gw := gateway(t)
	const fn = "placed"
	deploy(t, model.Function{Name: fn, Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, Timeout: 10 * time.Second})
	waitWarm(t, gw, fn, `{"action":"echo","value":"warm"}`)

	var hits atomic.Int64
	rogue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"echo":"rogue"}`)
	}))
	defer rogue.Close()
	host, portText, _ := net.SplitHostPort(strings.TrimPrefix(rogue.URL, "http://"))
	port, _ := strconv.Atoi(portText)

	allocs, _, err := env.Nomad.Jobs().Allocations(nomadjob.JobID(fn), false, nil)
	if err != nil || len(allocs) == 0 {
		t.Fatalf("the function's allocations: %v (%d)", err, len(allocs))
	}
	var placed string
	for _, a := range allocs {
		if a.ClientStatus == nomadapi.AllocClientStatusRunning {
			placed = a.ID
		}
	}
	// A principal that may register services (service:write), but is not
	// Nomad, registers two impostors: one with a made-up id, one with the
	// id Nomad would give a task of the real allocation.
	registrar := env.Consul
	if env.ACL {
		secret, err := principals.ConsulToken(context.Background(), env.Consul, "test-registrar", `service_prefix "nimbus-fn-" { policy = "write" }`)
		if err != nil {
			t.Fatal(err)
		}
		if registrar, err = clients.NewConsul(clients.ConsulConfig{Address: env.ConsulAddr, Token: secret}, clients.DefaultRetryPolicy, nil); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"rogue-" + fn, "_nomad-task-" + placed + "-main-" + nomadjob.ServiceName(fn) + "-http"}
	for _, id := range ids {
		reg := &consulapi.AgentServiceRegistration{ID: id, Name: nomadjob.ServiceName(fn), Address: host, Port: port}
		if err := registrar.Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = registrar.Agent().ServiceDeregister(id) })
	}

	// Once the gateway has seen both registrations, send it traffic.
	deadline := time.Now().Add(20 * time.Second)
	for gatewayView(t, gw, fn)["instances"] != float64(3) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never saw the two registrations beside the real instance: %v", gatewayView(t, gw, fn))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 20 {
		a := invoke(t, gw, fn, fmt.Sprintf(`{"action":"echo","value":"v%d"}`, i))
		if a.status != http.StatusOK || a.body["echo"] != fmt.Sprintf("v%d", i) {
			t.Errorf("invocation %d answered %d %s; only the function's own instance may answer", i, a.status, a.raw)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the rogue server got %d requests; it must get none", n)
	}
	// Operators see the refusals.
	want := fmt.Sprintf(`nimbus_refused_instances_total{function=%q} 2`, fn)
	if m := metricsText(t, gw); !strings.Contains(m, want) {
		t.Errorf("want %s in /metrics:\n%s", want, m)
	}
	if view := gatewayView(t, gw, fn); view["ready_instances"] != float64(1) {
		t.Errorf("the gateway counts %v ready instances; only the placed one is", view["ready_instances"])
	}
}

func gatewayView(t *testing.T, gw *testenv.Gateway, fn string) map[string]any {
	t.Helper()
	resp, err := gw.Do(http.MethodGet, "/v1/functions/"+fn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var view map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
		t.Fatal(err)
	}
	return view
}

func metricsText(t *testing.T, gw *testenv.Gateway) string {
	t.Helper()
	resp, err := gw.Do(http.MethodGet, "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
