package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The gateway under hostile load: slow-body clients that hold connections
// and body budget, and invokers with 5 MB bodies, at once, against one
// warm function. It measures the gateway process's memory (its resident
// set before the load is the baseline), whether /healthz keeps answering,
// and what each client got; then whether the gateway serves normally again.
const (
	slowClients  = 500
	bigInvokers  = 200
	bigBodyBytes = 5 << 20
	loadFor      = 40 * time.Second // longer than the gateway's body timeout (30 s)
)

// gatewayMemLimit is GOMEMLIMIT as examples/platform/nimbus-gateway.nomad.hcl
// sets it.
const gatewayMemLimit = "192MiB"

type loadReport struct {
	idleRSS, peakRSS, hwm   int64 // kB
	slow, big               map[string]int
	healthOK, healthFailed  int64
	recovered               bool
	budgetMB, memoryLimitMB int
}

func loadTest(gatewayURL string, pid int, fn string) (loadReport, error) {
	r := loadReport{slow: map[string]int{}, big: map[string]int{}, budgetMB: 64, memoryLimitMB: 256}
	r.idleRSS, _ = procStatus(pid, "VmRSS")
	addr := strings.TrimPrefix(gatewayURL, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), loadFor)
	defer cancel()

	var mu sync.Mutex
	count := func(m map[string]int, outcome string) {
		mu.Lock()
		m[outcome]++
		mu.Unlock()
	}
	var wg sync.WaitGroup
	// Slow clients announce a 5 MB body and send a byte a second.
	for i := 0; i < slowClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			count(r.slow, slowClient(ctx, addr, fn))
		}()
	}
	// Invokers send 5 MB events, one after another, until the load ends.
	body := `{"action":"echo","value":"` + strings.Repeat("x", bigBodyBytes-40) + `"}`
	client := &http.Client{Timeout: loadFor, Transport: auth.wrap(http.DefaultTransport)}
	for i := 0; i < bigInvokers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/v1/functions/"+fn+"/invoke", strings.NewReader(body))
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						count(r.big, "error")
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				count(r.big, strconv.Itoa(resp.StatusCode))
				if resp.StatusCode != http.StatusOK {
					time.Sleep(time.Second) // as Retry-After asks
				}
			}
		}()
	}
	// Health and memory, every 100 ms.
	var peak atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		hc := &http.Client{Timeout: 2 * time.Second}
		for ctx.Err() == nil {
			if rss, err := procStatus(pid, "VmRSS"); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			if resp, err := hc.Get(gatewayURL + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
				_ = resp.Body.Close()
				atomic.AddInt64(&r.healthOK, 1)
			} else {
				if err == nil {
					_ = resp.Body.Close()
				}
				atomic.AddInt64(&r.healthFailed, 1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	wg.Wait()
	r.peakRSS = peak.Load()
	r.hwm, _ = procStatus(pid, "VmHWM")
	time.Sleep(2 * time.Second)
	r.recovered = invoke(gatewayURL+"/v1/functions/"+fn+"/invoke", "") == nil
	return r, nil
}

// slowClient sends headers announcing a 5 MB body, then a byte a second,
// and reports what the gateway answered: a status, or how the connection
// ended.
func slowClient(ctx context.Context, addr, fn string) string {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return "connect failed"
	}
	defer func() { _ = conn.Close() }()
	head := fmt.Sprintf("POST /v1/functions/%s/invoke HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", fn, auth.tokenFor(addr), bigBodyBytes)
	if _, err := conn.Write([]byte(head)); err != nil {
		return "write failed"
	}
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- "closed without answer"
			return
		}
		_ = resp.Body.Close()
		answered <- strconv.Itoa(resp.StatusCode)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case a := <-answered:
			return a
		case <-ctx.Done():
			return "still held at the end"
		case <-tick.C:
			if _, err := conn.Write([]byte(" ")); err != nil {
				return <-answered
			}
		}
	}
}

// procStatus reads a field of /proc/<pid>/status in kB.
func procStatus(pid int, field string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func formatLoad(r loadReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n**Hostile load** (%d slow-body clients announcing 5 MB and sending a byte a second, plus %d invokers sending 5 MB events back to back, for %s at once; body budget %d MB, `GOMEMLIMIT=%s` and a memory limit of %d MB as in the gateway job):\n\n",
		slowClients, bigInvokers, loadFor, r.budgetMB, gatewayMemLimit, r.memoryLimitMB)
	b.WriteString("| Gateway memory | |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| Resident, idle before the load (baseline) | %.1f MB |\n", float64(r.idleRSS)/1024)
	fmt.Fprintf(&b, "| Resident, highest sampled under load | %.1f MB |\n", float64(r.peakRSS)/1024)
	fmt.Fprintf(&b, "| Peak resident (VmHWM) | %.1f MB |\n\n", float64(r.hwm)/1024)
	fmt.Fprintf(&b, "`/healthz` answered 200 %d times and failed %d times under load; after it, a normal invocation %s.\n\n",
		r.healthOK, r.healthFailed, map[bool]string{true: "succeeded", false: "FAILED"}[r.recovered])
	b.WriteString("| Client | Outcomes |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| Slow-body clients | %s |\n", outcomes(r.slow))
	fmt.Fprintf(&b, "| 5 MB invokers | %s |\n", outcomes(r.big))
	return b.String()
}

func outcomes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
