// Command invoke calls a function through the gateway's invoke API and
// prints the answer, the REPORT line from the instance's log tail and the
// latency measured here. The demo uses it. It authenticates with the
// bearer token in NIMBUS_INVOKE_TOKEN.
//
//	NIMBUS_INVOKE_TOKEN=<token> go run ./scripts/internal/invoke <gateway URL> <function> '<event JSON>'
package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: invoke <gateway URL> <function> '<event JSON>'")
		os.Exit(2)
	}
	gateway, name, event := strings.TrimRight(os.Args[1], "/"), os.Args[2], os.Args[3]
	req, err := http.NewRequest(http.MethodPost, gateway+"/v1/functions/"+name+"/invoke", strings.NewReader(event)) //nolint:noctx // a one-shot CLI
	if err != nil {
		fail(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Nimbus-Log-Type", "Tail")
	if token := os.Getenv("NIMBUS_INVOKE_TOKEN"); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	latency := time.Since(start)

	kind := "warm"
	if resp.Header.Get("X-Nimbus-Cold") == "true" {
		kind = "cold"
		switch resp.Header.Get("X-Nimbus-Cold-Path") {
		case "pool":
			kind = "cold (warm pool)"
		case "nomad":
			kind = "cold (Nomad)"
		}
	}
	fmt.Printf("  %-13s %-16s %4s  %7.1f ms  %s\n", name, kind, resp.Status[:3], float64(latency.Microseconds())/1000, strings.TrimSpace(string(body)))
	tail, _ := base64.StdEncoding.DecodeString(resp.Header.Get("X-Nimbus-Log-Result"))
	for _, line := range strings.Split(string(tail), "\n") {
		if strings.HasPrefix(line, "REPORT") {
			fmt.Printf("  %-13s %s\n", "", strings.ReplaceAll(strings.TrimSpace(line), "\t", "  "))
		}
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "invoke: %v\n", err)
	os.Exit(1)
}
