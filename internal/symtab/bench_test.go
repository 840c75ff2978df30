package symtab_test

import (
	"debug/elf"
	"debug/gosym"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/preempttrace/preempttrace/internal/symtab"
)

// benchBinary is a large real Go binary: the compiler of the toolchain running
// the benchmark.
func benchBinary(b *testing.B) string {
	path := filepath.Join(runtime.GOROOT(), "pkg", "tool", runtime.GOOS+"_"+runtime.GOARCH, "compile")
	if _, err := os.Stat(path); err != nil {
		b.Fatalf("benchmark binary: %v", err)
	}
	return path
}

// openGosym is what a debug/gosym user must do: read the table and text
// address from the ELF file, then build the table.
func openGosym(b *testing.B, path string) *gosym.Table {
	ef, err := elf.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer ef.Close()
	data, err := ef.Section(".gopclntab").Data()
	if err != nil {
		b.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, ef.Section(".text").Addr))
	if err != nil {
		b.Fatal(err)
	}
	return tab
}

// samplePCs returns n PCs spread over the text, the same for both decoders.
func samplePCs(f *symtab.File, n int) []uint64 {
	lo, hi := f.TextRange()
	rng := rand.New(rand.NewPCG(1, 2))
	pcs := make([]uint64, n)
	for i := range pcs {
		pcs[i] = lo + rng.Uint64N(hi-lo)
	}
	return pcs
}

func BenchmarkOpen(b *testing.B) {
	path := benchBinary(b)
	for b.Loop() {
		f, err := symtab.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

func BenchmarkOpenGosym(b *testing.B) {
	path := benchBinary(b)
	for b.Loop() {
		openGosym(b, path)
	}
}

func BenchmarkPCToLine(b *testing.B) {
	f, err := symtab.Open(benchBinary(b))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	pcs := samplePCs(f, 1<<20)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f.PCToLine(pcs[i&(len(pcs)-1)])
	}
}

func BenchmarkPCToLineGosym(b *testing.B) {
	path := benchBinary(b)
	f, err := symtab.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	pcs := samplePCs(f, 1<<20)
	f.Close()
	tab := openGosym(b, path)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tab.PCToLine(pcs[i&(len(pcs)-1)])
	}
}

// hotPCs is the number of distinct PCs in the hot-set measurement.
const hotPCs = 1024

// perOp runs op n times and returns the mean duration of one call.
func perOp(n int, op func(i int)) time.Duration {
	start := time.Now()
	for i := 0; i < n; i++ {
		op(i)
	}
	return time.Since(start) / time.Duration(n)
}

// BenchmarkVersusGosym measures both decoders in one run on the same binary
// (testing.Benchmark cannot nest, so it times fixed counts itself) and reports
// the open speed-up and lookup speed-up over debug/gosym, and this package's
// lookups per second: over 1M random text PCs, and over a hot set of PCs.
func BenchmarkVersusGosym(b *testing.B) {
	path := benchBinary(b)
	f, err := symtab.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tab := openGosym(b, path)
	pcs := samplePCs(f, 1<<20)

	for b.Loop() {
		open := perOp(50, func(int) {
			g, err := symtab.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			g.Close()
		})
		openPeer := perOp(10, func(int) { openGosym(b, path) })
		look := perOp(len(pcs), func(i int) { f.PCToLine(pcs[i]) })
		lookPeer := perOp(len(pcs), func(i int) { tab.PCToLine(pcs[i]) })
		// A live trace sees few distinct PCs: the loops that keep refusing.
		hot := perOp(len(pcs), func(i int) { f.PCToLine(pcs[i&(hotPCs-1)]) })
		hotPeer := perOp(len(pcs), func(i int) { tab.PCToLine(pcs[i&(hotPCs-1)]) })

		b.ReportMetric(float64(openPeer)/float64(max(open, 1)), "open-speedup")
		b.ReportMetric(float64(lookPeer)/float64(max(look, 1)), "lookup-speedup")
		b.ReportMetric(float64(time.Second)/float64(max(look, 1)), "lookups/s")
		b.ReportMetric(float64(hotPeer)/float64(max(hot, 1)), "hot-lookup-speedup")
		b.ReportMetric(float64(time.Second)/float64(max(hot, 1)), "hot-lookups/s")
		b.Logf("%s (%d functions): open %v vs debug/gosym %v; PCToLine over random PCs %v "+
			"vs %v, over %d hot PCs %v vs %v", filepath.Base(path), f.NumFuncs(), open,
			openPeer, look, lookPeer, hotPCs, hot, hotPeer)
	}
}
