package audit

import (
	"context"
	"flag"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend appends entries from many goroutines at once, as a busy
// server does; group commit shares each disk flush (synchronous=FULL)
// among the appends waiting for it.
func BenchmarkAppend(b *testing.B) {
	for _, par := range []int{1, 16, 64} {
		b.Run("writers="+itoa(par*2), func(b *testing.B) { // RunParallel runs par*GOMAXPROCS goroutines
			k := newKeys(b)
			l := k.open(b, filepath.Join(b.TempDir(), "audit.log"), true, nil)
			defer l.Close()
			var n atomic.Int64
			b.SetParallelism(par)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if _, err := l.Append(context.Background(), testEntry(int(i))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			el := time.Since(start)
			entries, commits := l.Stats()
			b.ReportMetric(float64(entries)/el.Seconds(), "entries/s")
			b.ReportMetric(float64(entries)/float64(max(commits, 1)), "entries/flush")
		})
	}
}

var verifySize = flag.Int("verify-size", 100000, "entries in the log BenchmarkVerify and BenchmarkProve build")

// bigLog builds a log of n entries quickly (appends from 64 goroutines).
func bigLog(b *testing.B, n int) (*keys, string) {
	b.Helper()
	k := newKeys(b)
	path := filepath.Join(b.TempDir(), "audit.log")
	l := k.open(b, path, true, nil)
	var next atomic.Int64
	done := make(chan struct{})
	for w := 0; w < 64; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if _, err := l.Append(context.Background(), testEntry(int(i))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for w := 0; w < 64; w++ {
		<-done
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	return k, path
}

// BenchmarkVerify verifies a whole log of -verify-size entries.
func BenchmarkVerify(b *testing.B) {
	k, path := bigLog(b, *verifySize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep := k.verify(b, path)
		if !rep.OK() || rep.Entries != int64(*verifySize) {
			b.Fatalf("verify: %v", rep.Problems)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(*verifySize)*1e6/1e9, "s/million")
}

// BenchmarkProve generates inclusion and consistency proofs in a log of
// -verify-size entries, after opening it (which reads and indexes every
// entry; the time is reported as open-ms).
func BenchmarkProve(b *testing.B) {
	k, path := bigLog(b, *verifySize)
	start := time.Now()
	l := k.open(b, path, false, nil)
	b.Logf("opened and indexed a log of %d entries in %s", *verifySize, time.Since(start).Round(time.Millisecond))
	defer l.Close()
	ctx := context.Background()
	size, _ := l.Size(ctx)
	b.Run("inclusion", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := l.ProveInclusion(ctx, int64(i*7919)%size, size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("consistency", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := l.ProveConsistency(ctx, 1+int64(i*7919)%(size-1), size); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
