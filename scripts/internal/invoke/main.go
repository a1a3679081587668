// Command invoke calls a function's instance directly, at the address
// Consul has for it, and prints the answer with its accounting headers.
// The demo uses it; the gateway's invoke API routes the same way.
//
//	go run ./scripts/internal/invoke <function> '<event JSON>'
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: invoke <function> '<event JSON>'")
		os.Exit(2)
	}
	name, event := os.Args[1], os.Args[2]
	c, err := consulapi.NewClient(consulapi.DefaultConfig())
	if err != nil {
		fail(err)
	}
	entries, _, err := c.Health().Service("nimbus-fn-"+name, "", true, nil)
	if err != nil {
		fail(err)
	}
	if len(entries) == 0 {
		fail(fmt.Errorf("no healthy instance of %s in Consul", name))
	}
	url := fmt.Sprintf("http://%s:%d/invoke", entries[0].Service.Address, entries[0].Service.Port)
	resp, err := http.Post(url, "application/json", strings.NewReader(event)) //nolint:gosec // the address Consul gave for the instance
	if err != nil {
		fail(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("  %s  →  %s\n", name, strings.TrimSpace(string(body)))
	fmt.Printf("  %s     duration %s ms, billed %s ms, memory %s/%s MB, cold start %s\n", strings.Repeat(" ", len(name)),
		resp.Header.Get("X-Nimbus-Duration-Ms"), resp.Header.Get("X-Nimbus-Billed-Duration-Ms"),
		resp.Header.Get("X-Nimbus-Max-Memory-Used-Mb"), resp.Header.Get("X-Nimbus-Memory-Size-Mb"), resp.Header.Get("X-Nimbus-Cold-Start"))
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "invoke: %v\n", err)
	os.Exit(1)
}
