// grpc-go load client for the benchmarks: calls one unary method of a plugin the way SPIRE does (grpc-go over the
// plugin's unix socket), with pre-encoded request bytes, and prints one JSON line:
//
//	{"ops_per_sec":…, "p50_us":…, "p99_us":…, "calls":…, "errors":…, "first_error":"…", "cpu_us_per_call":…}
//
// cpu_us_per_call is this client's own CPU (user+system, getrusage) during the measured window: on a small machine
// the load generator shares the CPUs with the plugin, and the benchmarks report what it took.
// Usage: goclient -socket PATH -method /pkg.Service/Method -req HEX [-c 32] [-seconds 3] [-warm 200]
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// rawCodec passes pre-encoded protobuf bytes through unchanged (named "proto" so the wire is what SPIRE sends).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	p := v.(*[]byte)
	*p = append((*p)[:0], b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func main() {
	socket := flag.String("socket", "", "plugin unix socket")
	method := flag.String("method", "", "full method name")
	reqHex := flag.String("req", "", "request message, hex")
	conc := flag.Int("c", 1, "concurrent callers")
	seconds := flag.Float64("seconds", 3, "measured duration")
	warm := flag.Int("warm", 200, "warm-up calls")
	flag.Parse()
	req, err := hex.DecodeString(*reqHex)
	if err != nil || *socket == "" || *method == "" {
		fmt.Fprintln(os.Stderr, "usage: goclient -socket PATH -method /pkg.Svc/M -req HEX [-c N] [-seconds S]")
		os.Exit(2)
	}
	conn, err := grpc.NewClient("unix:"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	call := func(resp *[]byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return conn.Invoke(ctx, *method, &req, resp)
	}
	var resp []byte
	for i := 0; i < *warm; i++ {
		if err := call(&resp); err != nil {
			fmt.Fprintln(os.Stderr, "warm-up call failed:", err)
			os.Exit(1)
		}
	}
	type result struct {
		lat    []time.Duration
		errors int
		first  string
	}
	cpu := func() float64 {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return 0
		}
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
	}
	results := make([]result, *conc)
	cpu0 := cpu()
	end := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func(r *result) {
			defer wg.Done()
			var out []byte
			for time.Now().Before(end) {
				s := time.Now()
				if err := call(&out); err != nil {
					r.errors++
					if r.first == "" {
						r.first = err.Error()
					}
					continue
				}
				r.lat = append(r.lat, time.Since(s))
			}
		}(&results[w])
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpuUs := cpu() - cpu0
	var all []time.Duration
	errs, first := 0, ""
	for _, r := range results {
		all = append(all, r.lat...)
		errs += r.errors
		if first == "" {
			first = r.first
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1e3
	}
	out, _ := json.Marshal(map[string]any{
		"ops_per_sec": float64(len(all)) / elapsed.Seconds(),
		"p50_us":      pct(0.50),
		"p99_us":      pct(0.99),
		"calls":       len(all),
		"errors":      errs,
		"first_error": first,
		"cpu_us_per_call": func() float64 {
			if len(all) == 0 {
				return 0
			}
			return cpuUs / float64(len(all))
		}(),
	})
	fmt.Println(string(out))
}
