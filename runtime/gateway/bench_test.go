package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/accesskey"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/auth"
	"github.com/nimbus-faas/terraform-provider-nimbus/runtime/instances"
)

// The gateway's own cost on the warm path, in process: the same client
// calls an instance directly (the floor) and through the gateway's invoke
// API, in one run. The instance answers as nimbus-host does; Consul and
// Nomad are in-memory stand-ins that answer once and then block, as
// blocking queries do. `make bench` measures the whole path on real
// agents; this isolates what the gateway adds, for profiling
// (-cpuprofile, -memprofile).

const benchEvent = `{"action":"echo","value":"bench"}`

// benchInstance answers POST /invoke like nimbus-host, with the
// accounting headers the gateway reads.
func benchInstance(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set(protocol.HeaderProtocol, protocol.Version)
		h.Set(protocol.HeaderRequestID, r.Header.Get(protocol.HeaderRequestID))
		h.Set(protocol.HeaderDurationMs, "0.12")
		h.Set(protocol.HeaderBilledDurationMs, "1")
		h.Set(protocol.HeaderMemorySizeMB, "128")
		h.Set(protocol.HeaderMaxMemoryUsedMB, "14")
		_, _ = w.Write([]byte(`{"echo":"bench"}`))
	}))
	b.Cleanup(srv.Close)
	return srv
}

// benchAllocID names the stand-in allocation of the one instance.
const benchAllocID = "0b0f2c1e-1111-2222-3333-444455556666"

type benchKV struct{ record []byte }

func (k benchKV) List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error) {
	if q != nil && q.WaitIndex > 0 {
		<-q.Context().Done()
		return nil, nil, q.Context().Err()
	}
	var pairs consulapi.KVPairs
	if strings.HasPrefix(kvstore.FunctionKey("bench"), prefix) {
		pairs = append(pairs, &consulapi.KVPair{Key: kvstore.FunctionKey("bench"), Value: k.record})
		// An alias of its $LATEST, for the cost of resolving an alias.
		live := kvstore.AliasRecord{Name: "live", Function: "bench", FunctionVersion: model.Latest}
		pairs = append(pairs, &consulapi.KVPair{Key: kvstore.AliasKey("bench", "live"), Value: live.Encode()})
	}
	return pairs, &consulapi.QueryMeta{LastIndex: 1}, nil
}

type benchHealth struct {
	host string
	port int
}

func (h benchHealth) Service(service, _ string, _ bool, q *consulapi.QueryOptions) ([]*consulapi.ServiceEntry, *consulapi.QueryMeta, error) {
	if q != nil && q.WaitIndex > 0 {
		<-q.Context().Done()
		return nil, nil, q.Context().Err()
	}
	entry := &consulapi.ServiceEntry{
		Node: &consulapi.Node{Address: h.host},
		Service: &consulapi.AgentService{ID: instances.NomadServicePrefix + benchAllocID + "-" + nomadjob.TaskName + "-" + service + "-http",
			Service: service, Address: h.host, Port: h.port},
		Checks: consulapi.HealthChecks{{Status: consulapi.HealthPassing}},
	}
	return []*consulapi.ServiceEntry{entry}, &consulapi.QueryMeta{LastIndex: 1}, nil
}

type benchNomad struct {
	host string
	port int
}

func (n benchNomad) Scale(string, string, *int, string, bool, map[string]interface{}, *nomadapi.WriteOptions) (*nomadapi.JobRegisterResponse, *nomadapi.WriteMeta, error) {
	return &nomadapi.JobRegisterResponse{}, &nomadapi.WriteMeta{}, nil
}

func (n benchNomad) ScaleStatus(string, *nomadapi.QueryOptions) (*nomadapi.JobScaleStatusResponse, *nomadapi.QueryMeta, error) {
	return &nomadapi.JobScaleStatusResponse{TaskGroups: map[string]nomadapi.TaskGroupScaleStatus{nomadjob.GroupName: {Desired: 1}}}, &nomadapi.QueryMeta{}, nil
}

func (n benchNomad) Info(string, *nomadapi.QueryOptions) (*nomadapi.Job, *nomadapi.QueryMeta, error) {
	return nil, nil, io.EOF
}

func (a benchAllocs) Stop(*nomadapi.Allocation, *nomadapi.QueryOptions) (*nomadapi.AllocStopResponse, error) {
	return &nomadapi.AllocStopResponse{}, nil
}

type benchAllocs struct {
	host string
	port int
}

func (a benchAllocs) Info(string, *nomadapi.QueryOptions) (*nomadapi.Allocation, *nomadapi.QueryMeta, error) {
	return &nomadapi.Allocation{
		ID: benchAllocID, JobID: nomadjob.JobID("bench"), TaskGroup: nomadjob.GroupName, ClientStatus: nomadapi.AllocClientStatusRunning,
		AllocatedResources: &nomadapi.AllocatedResources{Shared: nomadapi.AllocatedSharedResources{
			Networks: []*nomadapi.NetworkResource{{IP: a.host, DynamicPorts: []nomadapi.Port{{Label: nomadjob.PortLabel, Value: a.port}}}},
		}},
	}, &nomadapi.QueryMeta{}, nil
}

// benchGateway serves the gateway in process in front of one instance,
// with the operator key as the caller's bearer token.
func benchGateway(b *testing.B, instance *httptest.Server) (url, token string) {
	b.Helper()
	host, portText, _ := net.SplitHostPort(strings.TrimPrefix(instance.URL, "http://"))
	port, _ := strconv.Atoi(portText)
	f := model.Function{Name: "bench", Runtime: model.RuntimeProvided, MinInstances: 1, MaxInstances: 1, IdleTimeout: time.Hour}.WithDefaults()
	rec := nomadjob.Record(f, nomadjob.Source{URL: "http://store/v1/artifacts/sha256/ab", SHA256: "ab"}, nomadjob.Options{}, 0)
	id, secret, err := accesskey.New()
	if err != nil {
		b.Fatal(err)
	}
	g := New(Options{
		KV: benchKV{record: rec.Encode()}, Health: benchHealth{host, port}, Jobs: benchNomad{host, port}, Allocations: benchAllocs{host, port},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Auth:   auth.Options{Operator: &kvstore.AccessKey{ID: id, Secret: secret, Enabled: true, Invoke: []string{"*"}}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go g.Run(ctx)
	srv := httptest.NewServer(g.Handler())
	b.Cleanup(srv.Close)
	token = accesskey.Token(id, secret)
	// Until the gateway has learned of the function and trusts its instance.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if status := benchCall(b, http.DefaultClient, srv.URL+"/v1/functions/bench/invoke", token, false); status == http.StatusOK {
			break
		} else if time.Now().After(deadline) {
			b.Fatalf("the gateway did not serve the function: last status %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return srv.URL, token
}

// BenchmarkWarmThroughGatewayAlias is the same call through an alias
// (bench:live), which resolves to the same instance: what resolving an
// alias adds, against BenchmarkWarmThroughGateway in the same run.
func BenchmarkWarmThroughGatewayAlias(b *testing.B) {
	instance := benchInstance(b)
	url, token := benchGateway(b, instance)
	c := benchClient()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		benchCall(b, c, url+"/v1/functions/bench:live/invoke", token, true)
	}
}

func benchCall(b *testing.B, c *http.Client, url, token string, fatal bool) int {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(benchEvent))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		if fatal {
			b.Fatal(err)
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if fatal && resp.StatusCode != http.StatusOK {
		b.Fatalf("%s answered %d", url, resp.StatusCode)
	}
	return resp.StatusCode
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

// BenchmarkWarmFloorDirect is the floor: the client calls the instance.
func BenchmarkWarmFloorDirect(b *testing.B) {
	instance := benchInstance(b)
	c := benchClient()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		benchCall(b, c, instance.URL+"/invoke", "", true)
	}
}

// BenchmarkWarmThroughGateway is the same call through the gateway's
// invoke API, with a bearer token.
func BenchmarkWarmThroughGateway(b *testing.B) {
	instance := benchInstance(b)
	url, token := benchGateway(b, instance)
	c := benchClient()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		benchCall(b, c, url+"/v1/functions/bench/invoke", token, true)
	}
}
