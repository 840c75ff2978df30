//go:build linux

package ptrace

import (
	"encoding/binary"

	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// field is one member the tracer reads from a runtime struct.
type field struct {
	off  int64
	size int64
}

// span is the byte range of a struct that covers every field read from it, so that one
// read per struct suffices.
type span struct {
	lo, hi int64
}

func spanOf(fields ...field) span {
	s := span{lo: fields[0].off, hi: fields[0].off + fields[0].size}
	for _, f := range fields[1:] {
		s.lo = min(s.lo, f.off)
		s.hi = max(s.hi, f.off+f.size)
	}
	return s
}

// stateReader reads what isAsyncSafePoint checks before the PC, and the goroutine id,
// from the memory of a stopped thread's process: the same g, m and p members the eBPF
// probes read, found from the thread pointer rather than from the handler's arguments.
type stateReader struct {
	mem memReader

	// tlsOff is g's offset from the thread pointer; tlsKnown is false when unknown, and
	// then nothing is read.
	tlsOff   int64
	tlsKnown bool

	goid     target.GoidOffset
	st       *target.StateOffsets
	gSpan    span
	mSpan    span
	scratchG []byte
	scratchM []byte

	// pStatus, pPreempt and curgStatus receive p.status, p.preempt and
	// m.curg.atomicstatus.
	pStatus    [4]byte
	pPreempt   [1]byte
	curgStatus [4]byte
}

func newStateReader(pid int, tlsOff int64, tlsKnown bool, goid target.GoidOffset,
	st *target.StateOffsets) *stateReader {
	r := &stateReader{mem: memReader{pid: pid}, tlsOff: tlsOff, tlsKnown: tlsKnown, goid: goid,
		st: st}

	var gFields []field
	if goid.Known() {
		gFields = append(gFields, field{int64(goid.Offset), 8})
	}
	if st != nil {
		gFields = append(gFields, field{int64(st.GM), 8}, field{int64(st.GStackLo), 8})
		if r.wantKnown() {
			gFields = append(gFields, field{int64(st.GAtomicstatus), 4},
				field{int64(st.GPreempt), 1})
		}
		if st.GSecret >= 0 {
			gFields = append(gFields, field{int64(st.GSecret), 4})
		}
		r.mSpan = spanOf(field{int64(st.MCurg), 8}, field{int64(st.MLocks), 4},
			field{int64(st.MMallocing), 4}, field{int64(st.MPreemptoff), 16},
			field{int64(st.MP), 8})
		r.scratchM = make([]byte, r.mSpan.hi-r.mSpan.lo)
	}
	if len(gFields) > 0 {
		r.gSpan = spanOf(gFields...)
		r.scratchG = make([]byte, r.gSpan.hi-r.gSpan.lo)
	}
	return r
}

// fill sets a's goroutine id and thread state, as far as the offsets are known and the
// reads succeed; it returns how many reads failed.
func (r *stateReader) fill(a *trace.Attempt, threadPointer uint64) (failed int) {
	if !r.tlsKnown || threadPointer == 0 || r.scratchG == nil {
		return 0
	}
	g, err := r.mem.u64(uint64(int64(threadPointer) + r.tlsOff))
	if err != nil {
		return 1
	}
	if g == 0 {
		// A thread the runtime did not start, such as one of C code, has no g.
		return 0
	}
	if err := r.mem.read(g+uint64(r.gSpan.lo), r.scratchG); err != nil {
		return 1
	}
	gAt := func(off int32, size int) []byte {
		i := int64(off) - r.gSpan.lo
		return r.scratchG[i : i+int64(size)]
	}

	if r.goid.Known() {
		a.GoID = binary.LittleEndian.Uint64(gAt(int32(r.goid.Offset), 8))
		a.GoIDKnown = true
	}
	if r.st == nil {
		return 0
	}

	th := trace.Thread{G: g, M: binary.LittleEndian.Uint64(gAt(r.st.GM, 8)),
		StackLo: binary.LittleEndian.Uint64(gAt(r.st.GStackLo, 8))}
	if r.st.GSecret >= 0 {
		th.Secret = int32(binary.LittleEndian.Uint32(gAt(r.st.GSecret, 4)))
		th.SecretKnown = true
	}
	if th.M == 0 {
		return 0
	}
	if err := r.mem.read(th.M+uint64(r.mSpan.lo), r.scratchM); err != nil {
		return 1
	}
	mAt := func(off int32, size int) []byte {
		i := int64(off) - r.mSpan.lo
		return r.scratchM[i : i+int64(size)]
	}
	th.CurG = binary.LittleEndian.Uint64(mAt(r.st.MCurg, 8))
	th.Locks = int32(binary.LittleEndian.Uint32(mAt(r.st.MLocks, 4)))
	th.Mallocing = int32(binary.LittleEndian.Uint32(mAt(r.st.MMallocing, 4)))
	th.PreemptoffLen = binary.LittleEndian.Uint64(mAt(r.st.MPreemptoff+8, 8))
	th.P = binary.LittleEndian.Uint64(mAt(r.st.MP, 8))

	// What the M points at, the P and the current goroutine, in one read.
	var parts [3]chunk
	n := 0
	if th.P != 0 {
		parts[n], n = chunk{th.P + uint64(r.st.PStatus), r.pStatus[:]}, n+1
		if r.wantKnown() {
			parts[n], n = chunk{th.P + uint64(r.st.PPreempt), r.pPreempt[:]}, n+1
		}
	}
	curgStatusKnown := th.CurG != 0 && r.st.GAtomicstatus >= 0
	if curgStatusKnown {
		parts[n], n = chunk{th.CurG + uint64(r.st.GAtomicstatus), r.curgStatus[:]}, n+1
	}
	if n > 0 {
		if err := r.mem.readAll(parts[:n]...); err != nil {
			return 1
		}
	}

	if th.P != 0 {
		th.PStatus = binary.LittleEndian.Uint32(r.pStatus[:])
	}
	if r.wantKnown() {
		th.GStatus = binary.LittleEndian.Uint32(gAt(r.st.GAtomicstatus, 4))
		th.GPreempt = gAt(r.st.GPreempt, 1)[0] != 0
		th.PPreempt = th.P != 0 && r.pPreempt[0] != 0
		th.WantKnown = true
	}
	if curgStatusKnown {
		th.CurGStatus = binary.LittleEndian.Uint32(r.curgStatus[:])
		th.CurGStatusKnown = true
	}
	a.Thread, a.StateKnown = th, true
	return 0
}

// wantKnown reports whether the members wantAsyncPreempt reads are all known.
func (r *stateReader) wantKnown() bool {
	return r.st != nil && r.st.GAtomicstatus >= 0 &&
		r.st.GPreempt >= 0 && r.st.PPreempt >= 0
}
