package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/harness/principals"
)

// Gateway is a nimbus-gateway process wired to an environment's agents.
type Gateway struct {
	URL     string
	DataDir string
	LogPath string
	env     *Env
	bin     string
	creds   principals.Credentials
	// anyPort: listen on any free port (its log names it) rather than
	// on one of the slot's.
	anyPort bool
	// listen, when set, is the main listener's address.
	listen string
	// extraEnv overrides the gateway's environment.
	extraEnv []string
	// functionListener: serve the environment's function listener (only
	// the shared gateway: the address is the environment's).
	functionListener bool
	cmd              *exec.Cmd
}

// SharedGateway starts the nimbus-gateway binary at bin against the
// environment once, for all the tests of a package that need the same
// gateway (its artifact store, its routes); Stop ends it with the agents.
func (e *Env) SharedGateway(bin string) (*Gateway, error) {
	e.gatewayOnce.Do(func() {
		g := &Gateway{env: e, bin: bin, DataDir: filepath.Join(e.Dir, "gateway"), LogPath: filepath.Join(e.Dir, "gateway.log"),
			creds: e.Principals.Gateway, functionListener: true}
		if e.gatewayErr = g.start(); e.gatewayErr == nil {
			e.gateway = g
		}
	})
	return e.gateway, e.gatewayErr
}

// StartGateway runs the nimbus-gateway binary at bin against the
// environment's Nomad and Consul, on a port of the environment's slot, with
// its artifact store under the environment's state dir.
func (e *Env) StartGateway(bin string) (*Gateway, error) {
	g := &Gateway{env: e, bin: bin, DataDir: filepath.Join(e.Dir, "gateway"), LogPath: filepath.Join(e.Dir, "gateway.log"), creds: e.Principals.Gateway}
	if err := g.start(); err != nil {
		return nil, err
	}
	return g, nil
}

// StartGatewayAs runs another gateway with other credentials, its own
// store and its own log (named after name), on a free loopback port; env
// entries ("NOMAD_ADDR=...") override the environment's.
func (e *Env) StartGatewayAs(bin, name string, creds principals.Credentials, env ...string) (*Gateway, error) {
	g := &Gateway{env: e, bin: bin, DataDir: filepath.Join(e.Dir, name), LogPath: filepath.Join(e.Dir, name+".log"), creds: creds, anyPort: true, extraEnv: env}
	if err := g.start(); err != nil {
		return nil, err
	}
	return g, nil
}

// StartGatewayOver runs another gateway like StartGatewayAs over the
// artifact store of shared, as the gateways of one cluster share their
// store: the package one uploads, the function listener of another
// serves to instances.
func (e *Env) StartGatewayOver(bin, name string, shared *Gateway, env ...string) (*Gateway, error) {
	g := &Gateway{env: e, bin: bin, DataDir: shared.DataDir, LogPath: filepath.Join(e.Dir, name+".log"), creds: shared.creds, anyPort: true, extraEnv: env}
	if err := g.start(); err != nil {
		return nil, err
	}
	return g, nil
}

// StartGatewayOn runs another gateway like StartGatewayAs whose main
// listener (API, artifacts, metrics) is addr, such as the client's bridge
// address, where instances could try to reach it.
func (e *Env) StartGatewayOn(bin, name string, creds principals.Credentials, addr string) (*Gateway, error) {
	g := &Gateway{env: e, bin: bin, DataDir: filepath.Join(e.Dir, name), LogPath: filepath.Join(e.Dir, name+".log"), creds: creds, listen: addr}
	if err := g.start(); err != nil {
		return nil, err
	}
	return g, nil
}

// Restart ends the gateway abruptly, as a crash would, and starts it again
// with the same store; its URL may change.
func (g *Gateway) Restart() error {
	g.Kill()
	return g.start()
}

func (g *Gateway) start() error {
	e := g.env
	addr := "127.0.0.1:0"
	switch {
	case g.listen != "":
		addr = g.listen
	case !g.anyPort:
		addr = fmt.Sprintf("127.0.0.1:%d", e.portSlot.GatewayPort())
	}
	g.URL = "http://" + addr
	args := []string{"-listen", addr, "-data-dir", g.DataDir}
	if g.functionListener && e.FunctionGateway != "" {
		args = append(args, "-function-listen", e.FunctionGateway)
	}
	g.cmd = exec.Command(g.bin, args...)
	// The gateway runs as its own principal, with the shipped policies.
	g.cmd.Env = append(os.Environ(), "NOMAD_ADDR="+e.NomadAddr, "CONSUL_HTTP_ADDR="+e.ConsulAddr,
		"NOMAD_TOKEN="+g.creds.NomadToken, "CONSUL_HTTP_TOKEN="+g.creds.ConsulToken, "NIMBUS_GATEWAY_OPERATOR_KEY="+e.GatewayToken,
		"NIMBUS_GATEWAY_SIGNING_KEY="+e.SigningKey)
	if e.NATS != nil {
		g.cmd.Env = append(g.cmd.Env, "NIMBUS_GATEWAY_NATS_URL="+e.NATS.URL,
			"NIMBUS_GATEWAY_NATS_USER="+e.NATS.Gateway.User, "NIMBUS_GATEWAY_NATS_PASSWORD="+e.NATS.Gateway.Password)
	}
	g.cmd.Env = append(g.cmd.Env, g.extraEnv...)
	logFile, err := os.OpenFile(g.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	if err := g.cmd.Start(); err != nil {
		return err
	}
	// Generous: a restarted gateway connects to NATS and reads Consul
	// before it is ready, and a slow start must not take the package's
	// shared gateway away from every later test.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if g.anyPort {
			g.URL = listeningURL(g.LogPath, g.URL)
		}
		if resp, err := http.Get(g.URL + "/healthz"); err == nil { //nolint:gosec // our own loopback URL
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.Stop()
	log, _ := os.ReadFile(g.LogPath)
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	return fmt.Errorf("nimbus-gateway did not become ready within 30s; the end of its log (%s):\n%s", g.LogPath, strings.Join(lines[max(0, len(lines)-20):], "\n"))
}

// listeningURL reads the address from the gateway's last "listening" log
// line (a restarted gateway appends a new one), or returns url while there
// is none yet.
func listeningURL(logPath, url string) string {
	data, _ := os.ReadFile(logPath)
	for _, line := range strings.Split(string(data), "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "nimbus-gateway listening" && rec.Addr != "" {
			url = "http://" + rec.Addr
		}
	}
	return url
}

// GatewayAt is a gateway the environment did not start (the gateway job)
// at url, which accepts the environment's operator key.
func (e *Env) GatewayAt(url string) *Gateway { return &Gateway{URL: url, env: e} }

// Token is the operator key the gateway accepts (Env.GatewayToken).
func (g *Gateway) Token() string { return g.env.GatewayToken }

// Request is an HTTP request to the gateway with the operator's key, as
// an operator (or the provider) sends it.
func (g *Gateway) Request(method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequest(method, g.URL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+g.env.GatewayToken)
	return req, nil
}

// Do sends a request made with Request.
func (g *Gateway) Do(method, path string, body io.Reader) (*http.Response, error) {
	req, err := g.Request(method, path, body)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

// Metric reads one series, such as `nimbus_invocations_total{function="f",status="200"}`,
// from the gateway's /metrics (0 when absent).
func (g *Gateway) Metric(series string) (float64, error) {
	resp, err := g.Do(http.MethodGet, "/metrics", nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			_, err := fmt.Sscan(rest, &v)
			return v, err
		}
	}
	return 0, nil
}

// Signal sends sig to the gateway.
func (g *Gateway) Signal(sig os.Signal) error { return g.cmd.Process.Signal(sig) }

// Wait waits for the gateway to exit and reports how it ended.
func (g *Gateway) Wait(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		g.cmd.Process = nil
		return err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %s", timeout)
	}
}

// Pid is the gateway process's id (0 when it is not running).
func (g *Gateway) Pid() int {
	if g == nil || g.cmd == nil || g.cmd.Process == nil {
		return 0
	}
	return g.cmd.Process.Pid
}

// Kill ends the gateway abruptly, as a crash would.
func (g *Gateway) Kill() {
	if g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
		_ = g.cmd.Wait()
		g.cmd.Process = nil
	}
}

// Stop ends the gateway.
func (g *Gateway) Stop() {
	if g != nil && g.cmd != nil && g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
		_ = g.cmd.Wait()
	}
}

// ProviderConfig is the nimbus provider block for this environment: its
// agents with creds, and the gateway at gatewayURL with the operator key.
func (e *Env) ProviderConfig(creds principals.Credentials, gatewayURL string) string {
	return fmt.Sprintf(`
provider "nimbus" {
  gateway_url   = %q
  gateway_token = %q
  nomad {
    address = %q
    token   = %q
  }
  consul {
    address = %q
    token   = %q
  }
}
`, gatewayURL, e.GatewayToken, e.NomadAddr, creds.NomadToken, e.ConsulAddr, creds.ConsulToken)
}
