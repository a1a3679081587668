package clients

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Principal names who a client acts for, so that a refusal can say which
// shipped policy grants the missing right.
type Principal struct {
	// Policy is the policy's name on the cluster ("nimbus-deployer").
	Policy string
	// File is where Nimbus ships it ("examples/platform/policies/nomad/deployer.hcl").
	File string
}

// Denied reports whether err is an ACL refusal (HTTP 403) from Nomad or
// Consul, as explained by this package's clients.
func Denied(err error) bool {
	return err != nil && strings.Contains(err.Error(), deniedMarker)
}

// deniedMarker starts every explanation that deniedExplainer writes.
const deniedMarker = "Permission denied"

// deniedExplainer turns an agent's bare 403 into an actionable message:
// which right the request needed and which policy grants it. Both
// nomad/api and consul/api quote the response body in their errors, so the
// explanation reaches the provider's diagnostics and the gateway's logs
// without any call site knowing about ACLs.
type deniedExplainer struct {
	next      http.RoundTripper
	product   string // "Nomad" or "Consul"
	principal Principal
}

func (d deniedExplainer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		return resp, err
	}
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if zr, err := gzip.NewReader(resp.Body); err == nil {
			body = zr
		}
	}
	original, _ := io.ReadAll(io.LimitReader(body, 4096))
	_ = resp.Body.Close()
	msg := d.explain(req, strings.TrimSpace(string(original)))
	resp.Header.Del("Content-Encoding")
	resp.Body = io.NopCloser(strings.NewReader(msg))
	resp.ContentLength = int64(len(msg))
	resp.Header.Set("Content-Length", strconv.Itoa(len(msg)))
	return resp, nil
}

func (d deniedExplainer) explain(req *http.Request, original string) string {
	var b bytes.Buffer
	b.WriteString(deniedMarker)
	fmt.Fprintf(&b, ": %s refused %s %s", d.product, req.Method, req.URL.Path)
	if original != "" && !strings.EqualFold(original, deniedMarker) {
		fmt.Fprintf(&b, " (%s)", original)
	}
	right := nomadRight
	if d.product == "Consul" {
		right = consulRight
	}
	if r := right(req.Method, req.URL.Path, req.URL.Query().Get("namespace")); r != "" {
		fmt.Fprintf(&b, ". The token needs %s", r)
	} else {
		b.WriteString(". The token lacks the right to do this")
	}
	if d.principal.Policy != "" {
		fmt.Fprintf(&b, "; the %s policy grants it (%s): attach it to the token", d.principal.Policy, d.principal.File)
	} else {
		b.WriteString("; Nimbus's policies are in examples/platform/policies")
	}
	return b.String()
}

// nomadRight names the Nomad ACL capability that a request needs.
func nomadRight(method, path, namespace string) string {
	if namespace == "" {
		namespace = "default"
	}
	ns := func(capability string) string {
		return fmt.Sprintf("capability %q in namespace %q", capability, namespace)
	}
	write := method != http.MethodGet && method != http.MethodHead
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	switch parts[1] {
	case "jobs":
		if write {
			return ns("submit-job") + ", and host_volume read on each host volume the job mounts"
		}
		return ns("list-jobs")
	case "job":
		switch {
		case len(parts) > 3 && parts[3] == "scale" && write:
			return ns("scale-job")
		case len(parts) > 3 && parts[3] == "scale":
			return ns("read-job-scaling")
		case write:
			return ns("submit-job")
		}
		return ns("read-job")
	case "allocation", "allocations", "evaluation", "deployment":
		return ns("read-job")
	case "client":
		if len(parts) > 3 && parts[2] == "fs" && parts[3] == "logs" {
			return ns("read-logs")
		}
		return ns("read-fs")
	case "var", "vars":
		op := "read"
		if parts[1] == "vars" {
			op = "list"
		} else if write {
			op = "write"
		}
		return fmt.Sprintf("variables %q on path %q in namespace %q", op, strings.Join(parts[2:], "/"), namespace)
	case "agent":
		return `agent "read"`
	case "node", "nodes":
		return `node "read"`
	}
	return ""
}

// consulRight names the Consul ACL rule that a request needs.
func consulRight(method, path, _ string) string {
	write := method != http.MethodGet && method != http.MethodHead
	policy := "read"
	if write {
		policy = "write"
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	switch parts[1] {
	case "kv":
		return fmt.Sprintf("key_prefix %q { policy = %q }", strings.Join(parts[2:], "/"), policy)
	case "session":
		return `session_prefix "" { policy = "write" }`
	case "health", "catalog":
		if len(parts) > 3 && parts[2] == "service" {
			return fmt.Sprintf("service_prefix %q { policy = \"read\" } and node read", parts[3])
		}
	case "agent":
		if len(parts) > 2 && parts[2] == "service" {
			return `service_prefix "<name>" { policy = "write" }`
		}
		return `agent_prefix "" { policy = "read" }`
	}
	return ""
}

// explainDenied wraps c's transport with a deniedExplainer.
func explainDenied(c *http.Client, product string, p Principal) *http.Client {
	c.Transport = deniedExplainer{next: c.Transport, product: product, principal: p}
	return c
}

// Nimbus's principals and the policies that ship for them.
var (
	DeployerNomad  = Principal{Policy: "nimbus-deployer", File: "examples/platform/policies/nomad/deployer.hcl"}
	DeployerConsul = Principal{Policy: "nimbus-deployer", File: "examples/platform/policies/consul/deployer.hcl"}
	GatewayNomad   = Principal{Policy: "nimbus-gateway", File: "examples/platform/policies/nomad/gateway.hcl"}
	GatewayConsul  = Principal{Policy: "nimbus-gateway", File: "examples/platform/policies/consul/gateway.hcl"}
)
