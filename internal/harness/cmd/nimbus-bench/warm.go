package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testenv"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/testkit"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/nomadjob"
	"github.com/nimbus-faas/terraform-provider-nimbus/internal/protocol"
)

const event = `{"action":"echo","value":"bench"}`

// concurrentClients is the warm load's concurrency besides sequential.
const concurrentClients = 8

// warmSeries is one warm path under one load.
type warmSeries struct {
	path    string
	clients int
	lat     []time.Duration
	rate    float64 // requests per second
}

// memoryResult is the resident memory of a warm function instance's
// processes and of the floor server, in kB.
type memoryResult struct {
	host, handler, floor int64
}

// warmPaths measures the warm floor and the three ways to a warm Go
// function, sequentially and with concurrent clients, and the instance's
// memory.
func warmPaths(ctx context.Context, env *testenv.Env, floorBin, gatewayJob, gatewayProcess, fn string, requests int) ([]warmSeries, memoryResult, error) {
	var mem memoryResult
	if err := scaleTo(env, floorBridge, 1); err != nil {
		return nil, mem, err
	}
	floor, err := healthyInstanceURL(env, nomadjob.ServiceName(floorBridge))
	if err != nil {
		return nil, mem, err
	}
	proxy, stop, err := startProxy(floorBin, floor)
	if err != nil {
		return nil, mem, err
	}
	defer stop()
	// Through the gateway, the function starts its one instance.
	if err := invoke(gatewayJob+"/v1/functions/"+fn+"/invoke", ""); err != nil {
		return nil, mem, err
	}
	instance, err := healthyInstanceURL(env, nomadjob.ServiceName(fn))
	if err != nil {
		return nil, mem, err
	}
	// Called directly, the instance wants its key, as from the gateway.
	if err := auth.readInstanceKey(ctx, env, fn, instance); err != nil {
		return nil, mem, err
	}
	paths := []struct{ name, url string }{
		{"Floor: the static server, called directly", floor + "/"},
		{"The static server behind a plain reverse proxy (the floor of one more hop)", proxy + "/"},
		{"nimbus-host `/invoke`, called directly", instance + "/invoke"},
		{"Through the gateway job", gatewayJob + "/v1/functions/" + fn + "/invoke"},
		{"Through the gateway as a plain process", gatewayProcess + "/v1/functions/" + fn + "/invoke"},
	}
	var out []warmSeries
	for _, clients := range []int{1, concurrentClients} {
		for _, p := range paths {
			if clients > 1 && strings.HasPrefix(p.name, "nimbus-host") {
				// An instance takes one invocation at a time, as Lambda's
				// do: concurrent clients need the gateway's instances.
				continue
			}
			fmt.Printf("bench: warm, %d client(s): %s\n", clients, p.name)
			lat, rate, err := load(p.url, requests, clients)
			if err != nil {
				return nil, mem, err
			}
			out = append(out, warmSeries{path: p.name, clients: clients, lat: lat, rate: rate})
		}
	}
	if mem.host, mem.handler, err = instanceMemory(env, nomadjob.JobID(fn)); err != nil {
		return nil, mem, err
	}
	if mem.floor, _, err = instanceMemory(env, nomadjob.JobID(floorBridge)); err != nil {
		return nil, mem, err
	}
	return out, mem, scaleTo(env, floorBridge, 0)
}

// startProxy runs nimbus-floor as a plain reverse proxy to upstream on a
// free loopback port, as a process of its own like the gateway.
func startProxy(bin, upstream string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LISTEN=127.0.0.1", "PORT="+strconv.Itoa(port), "UPSTREAM="+upstream)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	for i := 0; i < 200; i++ {
		if probe(url+"/") == nil {
			return url, stop, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("the reverse proxy on %s did not answer", url)
}

// load sends n requests from the given number of concurrent clients after
// a short warm-up and returns their latencies and the throughput.
func load(url string, n, clients int) ([]time.Duration, float64, error) {
	// The warm-up brings up as many instances as the clients need.
	if _, _, err := send(url, 50*clients, clients); err != nil {
		return nil, 0, err
	}
	return send(url, n, clients)
}

// send sends n requests from the given number of concurrent clients.
func send(url string, n, clients int) ([]time.Duration, float64, error) {
	lat := make([]time.Duration, n)
	errs := make(chan error, clients)
	var next sync.Mutex
	i := 0
	begin := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= n {
					return
				}
				start := time.Now()
				if err := probe(url); err != nil {
					errs <- err
					return
				}
				lat[k] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	rate := float64(n) / time.Since(begin).Seconds()
	close(errs)
	if err := <-errs; err != nil {
		return nil, 0, err
	}
	return lat, rate, nil
}

// instanceMemory is the resident memory, in kB, of the running allocation
// of a job: its first process (nimbus-host, or the floor server) and the
// rest (the handler).
func instanceMemory(env *testenv.Env, jobID string) (first, rest int64, err error) {
	allocs, _, err := env.Nomad.Jobs().Allocations(jobID, false, nil)
	if err != nil {
		return 0, 0, err
	}
	var alloc *nomadapi.AllocationListStub
	for _, a := range allocs {
		if a.ClientStatus == nomadapi.AllocClientStatusRunning {
			alloc = a
		}
	}
	if alloc == nil {
		return 0, 0, fmt.Errorf("no running allocation of %s", jobID)
	}
	// A task's processes carry their allocation's id in their environment.
	marker := []byte("NOMAD_ALLOC_ID=" + alloc.ID + "\x00")
	entries, _ := os.ReadDir("/proc")
	firstPid := 0
	for _, e := range entries {
		environ, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(environ, marker) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		rss, err := procStatus(pid, "VmRSS")
		if err != nil {
			continue
		}
		// The task's own process started first: it has the lowest pid
		// unless pids wrapped, which a benchmark's few seconds do not.
		if firstPid == 0 || pid < firstPid {
			rest += first
			first, firstPid = rss, pid
		} else {
			rest += rss
		}
	}
	if firstPid == 0 {
		return 0, 0, fmt.Errorf("found no process of allocation %s", alloc.ID)
	}
	return first, rest, nil
}

var (
	auth   = &credentials{tokens: map[string]string{}, instanceKeys: map[string]string{}}
	client = &http.Client{Transport: auth.wrap(&http.Transport{MaxIdleConnsPerHost: 2 * concurrentClients})}
)

// credentials add a gateway's key to calls to that gateway and an
// instance's key to direct calls to that instance.
type credentials struct {
	mu           sync.Mutex
	tokens       map[string]string // gateway host:port → bearer token
	instanceKeys map[string]string // instance host:port → key
}

func (c *credentials) addGateway(url, token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens[strings.TrimPrefix(url, "http://")] = token
}

// tokenFor is the bearer token of the gateway at host:port.
func (c *credentials) tokenFor(addr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokens[addr]
}

// wrap is next with the credentials added to each request.
func (c *credentials) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		c.mu.Lock()
		token, key := c.tokens[r.URL.Host], c.instanceKeys[r.URL.Host]
		c.mu.Unlock()
		if token == "" && key == "" {
			return next.RoundTrip(r)
		}
		r = r.Clone(r.Context())
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		if key != "" {
			r.Header.Set(protocol.HeaderInstanceKey, key)
		}
		return next.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readInstanceKey reads the key of the function's running instance, as
// the gateway does, through Nomad.
func (c *credentials) readInstanceKey(ctx context.Context, env *testenv.Env, function, instanceURL string) error {
	key, err := testkit.InstanceKey(ctx, env.Nomad, nomadjob.JobID(function), nomadjob.InstanceKeyPath)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.instanceKeys[strings.TrimPrefix(instanceURL, "http://")] = key
	return nil
}

func waitKnown(gateway, name string) error {
	for i := 0; i < 200; i++ {
		if resp, err := client.Get(gateway + "/v1/functions/" + name); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the gateway never learned of %s", name)
}

// waitNoInstances waits until the gateway knows no instance of the function.
func waitNoInstances(gateway, name string) error {
	if gatewaySays(gateway+"/v1/functions/"+name, `"instances":0,`) {
		return nil
	}
	return fmt.Errorf("the gateway still sees instances of %s", name)
}

// gatewaySays polls a gateway URL for up to a minute until its answer
// contains want.
func gatewaySays(url, want string) bool {
	for i := 0; i < 1200; i++ {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if strings.Contains(string(b), want) {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// toZero scales the function to 0 and waits until its instances are gone,
// for the gateway and on the node, so that the next request starts cold.
func toZero(env *testenv.Env, gatewayURL, name string) error {
	if err := scaleTo(env, name, 0); err != nil {
		return err
	}
	if err := waitNoInstances(gatewayURL, name); err != nil {
		return err
	}
	return waitGone(env, nomadjob.ServiceName(name))
}

func invoke(url, wantCold string) error { return invokeWith(url, event, wantCold) }

// invokeWith posts an event and checks for a 200 and, when wantCold is
// set, the gateway's X-Nimbus-Cold header.
func invokeWith(url, body, wantCold string) error {
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	if wantCold != "" && resp.Header.Get("X-Nimbus-Cold") != wantCold {
		return fmt.Errorf("expected X-Nimbus-Cold %s, got %q", wantCold, resp.Header.Get("X-Nimbus-Cold"))
	}
	return nil
}

// probe is one request to an instance or a gateway: a POST of the event
// to an invoke path, a GET elsewhere (the floor server).
func probe(url string) error {
	if strings.HasSuffix(url, "/invoke") {
		return invoke(url, "")
	}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
