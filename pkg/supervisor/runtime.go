package supervisor

import "runtime/metrics"

// RuntimeStatus is the daemon's own view of its memory and goroutines, so
// that memory growth shows without a profiler (issue 16's benchmark reads
// it from the status file).
type RuntimeStatus struct {
	// HeapMB is the Go heap's live and not yet swept objects, in MiB.
	HeapMB float64 `json:"heap_mb"`
	// HeapReleasedMB is heap memory returned to the OS; TotalMB is all the
	// Go runtime holds from the OS (the upper bound of its share of RSS).
	HeapReleasedMB float64 `json:"heap_released_mb"`
	TotalMB        float64 `json:"total_mb"`
	Goroutines     int     `json:"goroutines"`
}

var runtimeSamples = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/total:bytes",
	"/sched/goroutines:goroutines",
}

// readRuntime reads the runtime's counters; unlike runtime.ReadMemStats it
// does not stop the world.
func readRuntime() *RuntimeStatus {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	mb := func(v metrics.Value) float64 {
		if v.Kind() != metrics.KindUint64 {
			return 0
		}
		return float64(v.Uint64()) / (1 << 20)
	}
	rt := &RuntimeStatus{HeapMB: mb(s[0].Value), HeapReleasedMB: mb(s[1].Value), TotalMB: mb(s[2].Value)}
	if s[3].Value.Kind() == metrics.KindUint64 {
		rt.Goroutines = int(s[3].Value.Uint64())
	}
	return rt
}
