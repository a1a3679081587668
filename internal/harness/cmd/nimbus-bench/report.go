package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// report is everything one run measured.
type report struct {
	trials, requests, burstTrials int
	fetchedBy                     string // who fetched the functions' code
	cold                          coldResult
	breakdown, floorBreakdown     []step
	breakdownOf                   string
	bursts                        []burstResult
	warm                          []warmSeries
	memory                        memoryResult
	scale                         scaleResult
	pools                         poolResult
	load                          loadReport
	async                         asyncResult
	source                        sourceResult
	deploys                       deployResult
}

func (r report) format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `make bench` on %s, one run: %d cold starts per path, %d trials per burst size, %d warm requests per path and load. The gateway runs as the Nomad job of `examples/platform`; every instance, the floor's included, runs in its own namespace on the Nimbus network. The functions' code is fetched by %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), r.trials, r.burstTrials, r.requests, r.fetchedBy)
	r.formatCold(&b)
	formatBreakdown(&b, "the floor", r.floorBreakdown)
	formatBreakdown(&b, r.breakdownOf, r.breakdown)
	formatPools(&b, r.pools)
	r.formatBursts(&b)
	formatDeploys(&b, r.deploys)
	formatAsync(&b, r.async)
	formatSource(&b, r.source, r.async)
	r.formatWarm(&b)
	r.formatMemory(&b)
	formatScale(&b, r.scale)
	formatNetwork(&b, r.cold.floorHost, r.cold.floorBridge)
	b.WriteString(formatLoad(r.load))
	return b.String()
}

func (r report) formatCold(b *strings.Builder) {
	floor := r.cold.floorBridge
	b.WriteString("**Cold start** (0 instances → first response; the trials of all paths interleaved):\n\n")
	b.WriteString("| Path | p50 | p99 | Ratio to the floor (p50) | Ratio (p99) |\n| --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(b, "| Floor: Nomad scale call → first 200 from the static server (host volume, no artifact, no nimbus-host) | %s | %s | 1 | 1 |\n", ms(pct(floor, .5)), ms(pct(floor, .99)))
	for _, f := range r.cold.functions {
		fmt.Fprintf(b, "| %s at 0 instances → answer through the gateway | %s | %s | **%.2f** | %.2f |\n", f.label,
			ms(pct(f.trials, .5)), ms(pct(f.trials, .99)), ratio(pct(f.trials, .5), pct(floor, .5)), ratio(pct(f.trials, .99), pct(floor, .99)))
	}
	b.WriteString("\n")
	if len(r.cold.interpreters) == 0 {
		return
	}
	b.WriteString("An interpreter's own start, which a Python or Node.js cold start cannot skip and the floor (a static Go binary) does not pay (process start → exit of an empty program, on the same machine, in the same run):\n\n")
	b.WriteString("| Program | p50 | p99 | Share of the floor (p50) |\n| --- | --- | --- | --- |\n")
	for _, in := range r.cold.interpreters {
		fmt.Fprintf(b, "| %s | %s | %s | %.2f |\n", in.label, ms(pct(in.trials, .5)), ms(pct(in.trials, .99)), ratio(pct(in.trials, .5), pct(floor, .5)))
	}
	b.WriteString("\n")
}

func (r report) formatBursts(b *strings.Builder) {
	fmt.Fprintf(b, "**Parallel cold starts** (median of the trials; the floor: scale the static server from 0 to n, until all n answer; Nimbus: n requests at once to a Go function at 0 instances, each holding its instance for %s, which is subtracted, until the last answer):\n\n", burstHold)
	b.WriteString("| Instances | Floor | Through the gateway | Instances the burst started | Ratio |\n| --- | --- | --- | --- | --- |\n")
	for _, s := range r.bursts {
		fmt.Fprintf(b, "| %d | %s | %s | %d | **%.2f** |\n", s.n, ms(pct(s.raw, .5)), ms(pct(s.gateway, .5)), s.instances, ratio(pct(s.gateway, .5), pct(s.raw, .5)))
	}
	b.WriteString("\n")
}

func (r report) formatWarm(b *strings.Builder) {
	b.WriteString("**Warm** (one instance of a Go function; the floor is the static server's instance, called directly):\n\n")
	b.WriteString("| Clients | Path | p50 | p99 | Throughput | p50 / floor | Throughput / floor |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	var floor warmSeries
	for _, s := range r.warm {
		if strings.HasPrefix(s.path, "Floor") {
			floor = s // the first row of each load
		}
		fmt.Fprintf(b, "| %d | %s | %s | %s | %.0f req/s | %.2f | %.2f |\n", s.clients, s.path, us(pct(s.lat, .5)), us(pct(s.lat, .99)), s.rate,
			ratio(pct(s.lat, .5), pct(floor.lat, .5)), s.rate/floor.rate)
	}
	// What the gateway adds: through it, against the instance called
	// directly (one client: an instance takes one invocation at a time).
	var floor1, proxy, direct, job warmSeries
	for _, s := range r.warm {
		switch {
		case s.clients != 1:
		case strings.HasPrefix(s.path, "Floor"):
			floor1 = s
		case strings.HasPrefix(s.path, "The static server behind"):
			proxy = s
		case strings.HasPrefix(s.path, "nimbus-host"):
			direct = s
		case strings.HasPrefix(s.path, "Through the gateway job"):
			job = s
		}
	}
	fmt.Fprintf(b, "\nOne client: the gateway job adds **%s** at p50 (%s at p99) to nimbus-host called directly; a plain reverse proxy adds %s (%s) to the static server, the floor of one more hop. With %d clients the gateway spreads the load over up to %d instances; nimbus-host is not called directly then, since an instance takes one invocation at a time.",
		us(pct(job.lat, .5)-pct(direct.lat, .5)), us(pct(job.lat, .99)-pct(direct.lat, .99)),
		us(pct(proxy.lat, .5)-pct(floor1.lat, .5)), us(pct(proxy.lat, .99)-pct(floor1.lat, .99)), concurrentClients, concurrentClients)
	b.WriteString("\n\n")
}

func (r report) formatMemory(b *strings.Builder) {
	b.WriteString("**Memory** (resident, warm instance after the load):\n\n| Process | RSS |\n| --- | --- |\n")
	fmt.Fprintf(b, "| Floor: the static server | %.1f MB |\n", float64(r.memory.floor)/1024)
	fmt.Fprintf(b, "| nimbus-host | %.1f MB |\n", float64(r.memory.host)/1024)
	fmt.Fprintf(b, "| The Go handler it runs | %.1f MB |\n\n", float64(r.memory.handler)/1024)
}

func formatNetwork(b *strings.Builder, host, bridge []time.Duration) {
	b.WriteString("**Network isolation** (the floor's cold start with host networking and in its own namespace on the Nimbus network, interleaved):\n\n")
	b.WriteString("| Network | p50 | p99 |\n| --- | --- | --- |\n")
	fmt.Fprintf(b, "| Host networking | %s | %s |\n", ms(pct(host, .5)), ms(pct(host, .99)))
	fmt.Fprintf(b, "| Own namespace on the Nimbus network (`cni/nimbus`) | %s | %s |\n", ms(pct(bridge, .5)), ms(pct(bridge, .99)))
	fmt.Fprintf(b, "| **Ratio** | **%.2f** | **%.2f** |\n", ratio(pct(bridge, .5), pct(host, .5)), ratio(pct(bridge, .99), pct(host, .99)))
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// writeSection replaces the text between the bench markers.
func writeSection(path, report string) error {
	const begin, end = "<!-- nimbus-bench:begin -->", "<!-- nimbus-bench:end -->"
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		s += "\n## Gateway: cold start and warm path\n\n" + begin + "\n" + report + end + "\n"
	} else {
		s = s[:i+len(begin)] + "\n" + report + s[j:]
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
