package synth

import (
	"sync/atomic"
	"testing"
)

// report adds the rates load tests plan with: bundle entries (resources)
// and megabytes (10^6 bytes) of JSON made per second.
func report(b *testing.B, resources, bytes int64) {
	s := b.Elapsed().Seconds()
	if s == 0 {
		return
	}
	b.ReportMetric(float64(resources)/s, "resources/s")
	b.ReportMetric(float64(bytes)/1e6/s, "MB/s")
	b.ReportMetric(float64(resources)/float64(b.N), "resources/op")
}

// BenchmarkPatientBundle makes patient after patient as PatientBundle
// does, each in a new slice.
func BenchmarkPatientBundle(b *testing.B) {
	g := New(1)
	var resources, size int64
	i := 0
	for b.Loop() {
		out, n, err := g.patientBundle(i)
		if err != nil {
			b.Fatal(err)
		}
		resources += int64(n)
		size += int64(len(out))
		i++
	}
	report(b, resources, size)
}

// BenchmarkAppendPatientBundle reuses one buffer, as a load driver
// streaming bundles would.
func BenchmarkAppendPatientBundle(b *testing.B) {
	g := New(1)
	var resources, size int64
	buf := make([]byte, 0, 1<<20)
	i := 0
	for b.Loop() {
		out, n, err := g.appendPatient(buf[:0], i)
		if err != nil {
			b.Fatal(err)
		}
		buf = out
		resources += int64(n)
		size += int64(len(out))
		i++
	}
	report(b, resources, size)
}

// BenchmarkPatientBundleParallel uses every core (GOMAXPROCS).
func BenchmarkPatientBundleParallel(b *testing.B) {
	g := New(1)
	var resources, size, next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 1<<20)
		for pb.Next() {
			out, n, err := g.appendPatient(buf[:0], int(next.Add(1)))
			if err != nil {
				b.Error(err)
				return
			}
			buf = out
			resources.Add(int64(n))
			size.Add(int64(len(out)))
		}
	})
	report(b, resources.Load(), size.Load())
}

func BenchmarkIdentifying(b *testing.B) {
	g := New(1)
	i := 0
	for b.Loop() {
		g.Identifying(i)
		i++
	}
}

func BenchmarkShared(b *testing.B) {
	g := New(1)
	for b.Loop() {
		if _, err := g.Shared(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		New(1)
	}
}
