//go:build linux

package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
)

// ErrStopped is returned by Read once Stop was called and every event that was in the ring
// buffer has been read.
var ErrStopped = errors.New("tracer stopped")

// Options says what to trace.
type Options struct {
	// PID is the target process, in the tracer's PID namespace.
	PID int

	// Exe is the target's executable, which the uprobes are placed in. Empty means
	// /proc/PID/exe, which names the right file even across mount namespaces.
	Exe string

	// Symtab is the decoded executable, used to place the probes. It must describe the same
	// file as Exe.
	Symtab *symtab.File

	// Goid is where runtime.g keeps the goroutine id (FindGoidOffset). The zero value is
	// unknown: events then carry no goroutine id.
	Goid target.GoidOffset

	// State is where the runtime keeps the thread state isAsyncSafePoint checks
	// (FindRuntimeOffsets). Nil means unknown: events then carry no state.
	State *target.StateOffsets

	// RingBytes is the ring buffer size, a power of two and a multiple of the page size;
	// 0 keeps the default of 512 KiB.
	RingBytes uint32

	// ConfirmAccepted adds a probe at runtime.asyncPreempt's entry that confirms each
	// accepted request: its event then waits until the goroutine gets there, and says so
	// (EventEntered, EventEntryMissed). The probe costs one more uprobe hit per accepted
	// request, so it is off unless asked for.
	ConfirmAccepted bool

	// ObserveReturns adds a probe at each RET of runtime.isAsyncSafePoint, so that an event
	// says which of its checks decided (Tracer.ReturnOf). A RET is single-stepped, which
	// costs 13-19 µs a hit on the machines measured, so it is off unless asked for.
	ObserveReturns bool

	// Latency bounds how long an event may wait in the ring before Read returns it; 0 means
	// DefaultLatency. The probes wake the reader only when an eighth of the ring is full,
	// because a wakeup per event would double what a SIGURG costs the target; below that,
	// Read looks at the ring this often.
	Latency time.Duration
}

// DefaultLatency is the default of Options.Latency.
const DefaultLatency = 25 * time.Millisecond

// defaultRingBytes is RINGBUF_BYTES in bpf/preempttrace.h.
const defaultRingBytes = 512 << 10

// Tracer holds the probes attached to one process and the ring buffer they write.
type Tracer struct {
	plan    *Plan
	clock   monoClock
	objs    bpfObjects
	reader  *ringbuf.Reader
	latency time.Duration

	// ring is a copy of the ring buffer's descriptor in Go's network poller, where Read
	// waits for records (waitRing); nil where the kernel would not poll it so, and Read then
	// waits in the reader, a thread blocked in epoll_wait. Such a wait, longer than the
	// runtime's 10 ms, has sysmon hand off the thread's P and then look every 20 µs: over a
	// thousand wakeups a second of the tracer, on the CPUs the target runs on.
	ring     *os.File
	ringConn syscall.RawConn

	// waking is set by Stop and Close: a Read that is about to wait looks at the ring again.
	waking atomic.Bool

	// detached is set once Stop removed every probe: from then on an empty ring is the end
	// of the events even where flushing the reader failed and it never says so.
	detached atomic.Bool

	// bias is how far above its link-time addresses the target's executable is loaded,
	// known when the plan has return sites.
	bias uint64

	// deadline is the unix-nanosecond time set by SetDeadline, 0 for none.
	deadline atomic.Int64

	// confirming says the entered probe is attached; waiting holds, once the ring is
	// drained after Stop, the accepted events whose goroutine had not entered asyncPreempt
	// yet, which Read returns last.
	confirming bool
	waiting    []Event
	drained    bool

	mu      sync.Mutex
	links   []link.Link // in attach order: entered, handled, returns, verdict, entry
	stopped bool
	closed  bool
}

// Attach places the probes of PlanProbes in the target and starts recording. The target
// keeps running throughout; Close removes every probe. A PermissionError, FeatureError,
// UnsupportedError or SymbolError says what the caller can do about a failure.
func Attach(opts Options) (*Tracer, error) {
	if opts.PID <= 0 || opts.Symtab == nil {
		return nil, errors.New("attach: a PID and its decoded executable are required")
	}
	if opts.Exe == "" {
		opts.Exe = fmt.Sprintf("/proc/%d/exe", opts.PID)
	}

	if err := Preflight(); err != nil {
		return nil, err
	}
	plan, err := PlanProbes(opts.Symtab)
	if err != nil {
		return nil, err
	}

	clock, err := newMonoClock()
	if err != nil {
		return nil, err
	}

	// The plan says where the probes sit, so a site not asked for leaves it.
	if !opts.ConfirmAccepted {
		plan.Entered = nil
		plan.Missing = slices.DeleteFunc(plan.Missing, func(m string) bool {
			return strings.HasPrefix(m, string(SiteEntered)+":")
		})
	}
	if !opts.ObserveReturns {
		plan.Returns = nil
		plan.Missing = slices.DeleteFunc(plan.Missing, func(m string) bool {
			return strings.HasPrefix(m, string(SiteReturn)+":")
		})
	}
	t := &Tracer{plan: plan, clock: clock, latency: opts.Latency,
		confirming: plan.Entered != nil}
	if plan.Returns != nil {
		// The probes report the RET's address in the process; the plan has link-time ones.
		// Without the bias the return probes would report sites no plan entry matches;
		// the trace goes on without them and says so, as for a site not found.
		proc, err := target.Find(opts.PID)
		if err == nil {
			t.bias, err = proc.LoadBias()
		}
		if err != nil {
			plan.Returns = nil
			plan.Missing = append(plan.Missing,
				fmt.Sprintf("%s: load bias of the target unknown: %v", SiteReturn, err))
		}
	}
	if t.latency <= 0 {
		t.latency = DefaultLatency
	}
	if err := t.load(opts); err != nil {
		return nil, err
	}

	if err := checkSameCode(opts.Exe, opts.Symtab, plan); err != nil {
		t.Close()
		return nil, err
	}
	if err := t.attach(opts); err != nil {
		t.Close()
		return nil, err
	}

	t.reader, err = ringbuf.NewReader(t.objs.Events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	t.ring, t.ringConn = pollable(t.objs.Events.FD())

	// Requests start to count only now that every probe is in place.
	if err := t.objs.Tracing.Set(uint8(1)); err != nil {
		t.Close()
		return nil, fmt.Errorf("start tracing: %w", err)
	}
	return t, nil
}

// load configures the BPF collection for the target and loads it into the kernel.
func (t *Tracer) load(opts Options) error {
	spec, err := loadBpf()
	if err != nil {
		return fmt.Errorf("read BPF object: %w", err)
	}
	ring := uint32(defaultRingBytes)
	if opts.RingBytes != 0 {
		ring = opts.RingBytes
	}
	spec.Maps[bpfMapEvents].MaxEntries = ring

	// The accepted map is preallocated: without the entered probe it holds nothing.
	if !t.confirming {
		spec.Maps[bpfMapAccepted].MaxEntries = 1
	}

	ns, err := ownPIDNamespace()
	if err != nil {
		return err
	}

	goid := int64(-1)
	if opts.Goid.Known() {
		goid = int64(opts.Goid.Offset)
	}
	vars := map[string]any{
		bpfVarCfgTgid:        uint32(opts.PID),
		bpfVarCfgGoidOffset:  goid,
		bpfVarCfgOffsets:     bpfOffsets(opts.State),
		bpfVarCfgAbi:         bpfABI(t.plan.ABI),
		bpfVarCfgHaveVerdict: boolByte(t.plan.Verdict != nil),
		bpfVarCfgHaveHandled: boolByte(t.plan.Handled != nil),
		bpfVarCfgHaveEntered: boolByte(t.confirming),
		bpfVarCfgWakeupBytes: uint64(ring / 8),
	}
	if ns != nil {
		vars[bpfVarCfgUsePidns] = uint8(1)
		vars[bpfVarCfgPidnsDev] = ns.dev
		vars[bpfVarCfgPidnsIno] = ns.ino
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}

	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return denied(fmt.Errorf("load BPF programs: %w", err))
		}
		return fmt.Errorf("load BPF programs: %w", err)
	}
	return nil
}

// attach places the uprobes. The later sites go first so that no verdict arrives before its
// entry probe exists, and Stop removes them in the opposite order: a request under way when
// Stop begins still finds the probes that complete it.
func (t *Tracer) attach(opts Options) error {
	ex, err := link.OpenExecutable(opts.Exe)
	if err != nil {
		return fmt.Errorf("open target executable: %w", err)
	}

	type probe struct {
		pl   *Placement
		fn   string
		prog *ebpf.Program
	}
	probes := []probe{
		{t.plan.Entered, fnAsyncPreempt, t.objs.PreempttraceEntered},
		{t.plan.Handled, fnSighandler, t.objs.PreempttraceHandled},
	}
	for i := range t.plan.Returns {
		probes = append(probes, probe{&t.plan.Returns[i].Placement, fnIsAsyncSafePoint,
			t.objs.PreempttraceReturned})
	}
	probes = append(probes,
		probe{t.plan.Verdict, fnDoSigPreempt, t.objs.PreempttraceVerdict},
		probe{&t.plan.Entry, fnDoSigPreempt, t.objs.PreempttraceSigpreempt})
	for _, p := range probes {
		if p.pl == nil {
			continue
		}

		// Address is a file offset: cilium/ebpf passes it to the kernel as the uprobe
		// offset, which is relative to the start of the file, not a virtual address. The
		// PID filter keeps other processes running the same file untouched.
		l, err := ex.Uprobe(p.fn, p.prog, &link.UprobeOptions{
			Address: p.pl.FileOffset,
			PID:     opts.PID,
		})
		if err != nil {
			err = fmt.Errorf("attach %s probe at %s+%#x: %w", p.pl.Site, p.fn, p.pl.Addr, err)
			if errors.Is(err, os.ErrPermission) {
				return denied(err)
			}
			return err
		}
		t.links = append(t.links, l)
	}
	return nil
}

// checkSameCode checks that exe holds, at each probe's file offset, the instruction the plan
// was made from, so that a symbol table of another build cannot put a probe mid-instruction.
func checkSameCode(exe string, f *symtab.File, plan *Plan) error {
	r, err := os.Open(exe)
	if err != nil {
		return fmt.Errorf("open target executable: %w", err)
	}
	defer r.Close()

	for _, pl := range plan.Placements() {
		want := f.Bytes(pl.Addr, 16)
		if want == nil {
			want = f.Bytes(pl.Addr, 1) // a site in the last bytes of its segment
		}
		if want == nil {
			return fmt.Errorf("%s probe site %#x has no bytes in the decoded executable",
				pl.Site, pl.Addr)
		}
		got := make([]byte, len(want))
		if _, err := r.ReadAt(got, int64(pl.FileOffset)); err != nil {
			return fmt.Errorf("read %s probe site of %s: %w", pl.Site, exe, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s probe site: %s differs from the decoded executable at "+
				"file offset %#x: %w", pl.Site, exe, pl.FileOffset, ErrOtherBuild)
		}
	}
	return nil
}

// ReturnOf returns the return site of isAsyncSafePoint that the event's request left by:
// which check decided. False when it was not observed.
func (t *Tracer) ReturnOf(ev *Event) (ReturnSite, bool) {
	if !ev.Has(EventReturned) {
		return ReturnSite{}, false
	}
	return t.plan.ReturnAt(ev.ReturnedAt - t.bias)
}

// ErrOtherBuild reports an Options.Exe that is not the file Options.Symtab decoded.
var ErrOtherBuild = errors.New("not the same build")

// Plan returns where the probes sit.
func (t *Tracer) Plan() *Plan { return t.plan }

// Read blocks until the next event arrives, at most Options.Latency after the probe sent
// it. After Stop it returns the events still in the ring, then those of accepted requests
// still waiting for asyncPreempt's entry (Options.ConfirmAccepted), and then ErrStopped;
// after Close it returns ErrClosed; past the time set with SetDeadline it returns
// os.ErrDeadlineExceeded.
// Read must not be called from two goroutines at once.
func (t *Tracer) Read() (Event, error) {
	var ev Event

	if t.drained {
		if t.isClosed() {
			return ev, ErrClosed
		}
		return t.nextWaiting()
	}
	rec, err := t.next()
	if errors.Is(err, ErrStopped) && t.isClosed() {
		// Close stops the probes before it closes the ring: a Read under way then may see
		// the stop first.
		return ev, ErrClosed
	}
	if errors.Is(err, ErrStopped) {
		if err := t.takeWaiting(); err != nil {
			return ev, err
		}
		return t.nextWaiting()
	}
	if err != nil {
		return ev, err
	}

	if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &ev); err != nil {
		return ev, fmt.Errorf("decode event of %d bytes: %w", len(rec.RawSample), err)
	}
	return ev, nil
}

// isClosed reports whether Close was called.
func (t *Tracer) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// takeWaiting moves the accepted events still waiting for asyncPreempt out of the map, once
// Stop removed every probe and the ring is empty. Their goroutines were preempted or are
// about to be; that they entered asyncPreempt was not seen, so they carry neither
// EventEntered nor EventEntryMissed.
func (t *Tracer) takeWaiting() error {
	t.drained = true
	if !t.confirming {
		return nil
	}

	// Close frees the map; hold it off while the map is read.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}

	var tid uint32
	var ev Event
	it := t.objs.Accepted.Iterate()
	for it.Next(&tid, &ev) {
		t.waiting = append(t.waiting, ev)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read accepted requests: %w", err)
	}
	return nil
}

// nextWaiting returns the next event takeWaiting found, then ErrStopped.
func (t *Tracer) nextWaiting() (Event, error) {
	if len(t.waiting) == 0 {
		return Event{}, ErrStopped
	}
	ev := t.waiting[0]
	t.waiting = t.waiting[1:]
	return ev, nil
}

// next returns the next record. The probes do not wake the reader for every event, so it
// drains the ring, then waits until the probes wake it or latency passes, and looks again.
func (t *Tracer) next() (ringbuf.Record, error) {
	for {
		poll := time.Now().Add(t.latency)
		user := t.deadline.Load()
		if user != 0 && user < poll.UnixNano() {
			poll = time.Unix(0, user)
		}

		// With the network poller to wait in, the reader only looks: a deadline in the
		// past has it return what the ring holds, then os.ErrDeadlineExceeded.
		if t.ring != nil {
			t.reader.SetDeadline(time.Unix(0, 1))
		} else {
			t.reader.SetDeadline(poll)
		}

		// Whether the probes were gone must be read before the ring is: a record sent
		// between a look at an empty ring and their removal is still to come.
		detached := t.detached.Load()
		rec, err := t.reader.Read()
		switch {
		case err == nil:
			return rec, nil
		case errors.Is(err, ringbuf.ErrFlushed):
			return rec, ErrStopped
		case errors.Is(err, os.ErrClosed):
			return rec, ErrClosed
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return rec, fmt.Errorf("read ring buffer: %w", err)
		}

		// The ring is empty: the end once no probe is left, else go on unless the caller's
		// deadline passed.
		if detached {
			return rec, ErrStopped
		}
		if user := t.deadline.Load(); user != 0 && time.Now().UnixNano() >= user {
			return rec, err
		}
		if t.ring != nil {
			if err := t.waitRing(poll); err != nil {
				return rec, err
			}
		}
	}
}

// pollable returns a duplicate of the ring buffer descriptor fd registered with Go's network
// poller, or nil where that fails; fd itself is left as it was.
func pollable(fd int) (*os.File, syscall.RawConn) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil
	}

	// A descriptor in non-blocking mode is one os.NewFile registers with the poller; the
	// mode belongs to the open file both share, and nothing reads the ring with read(2).
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, nil
	}
	f := os.NewFile(uintptr(dup), "ring buffer")

	// Only a descriptor in the poller takes deadlines.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, nil
	}
	conn, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil
	}
	return f, conn
}

// waitRing waits in the network poller until the probes wake the reader, until passes, or
// Stop or Close is called. The goroutine holds no thread meanwhile.
func (t *Tracer) waitRing(until time.Time) error {
	if err := t.ring.SetReadDeadline(until); err != nil {
		return t.waitError(err)
	}

	// RawConn.Read waits whenever the function returns false, then calls it again: the
	// second call follows a wakeup.
	first := true
	err := t.ringConn.Read(func(uintptr) bool {
		if first {
			first = false
			return t.waking.Load()
		}
		return true
	})
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return t.waitError(err)
}

// waitError is what Read returns for an error of the ring's descriptor: ErrClosed once Close
// closed it.
func (t *Tracer) waitError(err error) error {
	if t.isClosed() {
		return ErrClosed
	}
	return fmt.Errorf("wait for ring buffer: %w", err)
}

// SetDeadline makes a blocked or later Read return os.ErrDeadlineExceeded once at has
// passed; the zero time removes the deadline. It may be called while Read is blocked, and
// takes effect within Options.Latency.
func (t *Tracer) SetDeadline(at time.Time) {
	if at.IsZero() {
		t.deadline.Store(0)
		return
	}
	t.deadline.Store(at.UnixNano())
}

// Stop removes the probes, so no new event arrives, and lets Read drain the ring.
func (t *Tracer) Stop() error {
	t.mu.Lock()
	defer t.mu.Unlock()

	return t.stopLocked()
}

func (t *Tracer) stopLocked() error {
	if t.stopped {
		return nil
	}
	t.stopped = true

	// No new request from here on; those in flight still complete. Then the entry probe goes
	// first, so that no request starts without the probes that finish it.
	var errs []error
	if err := t.objs.Tracing.Set(uint8(0)); err != nil {
		errs = append(errs, fmt.Errorf("stop tracing: %w", err))
	}
	for i := len(t.links) - 1; i >= 0; i-- {
		if err := t.links[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach probe: %w", err))
		}
	}
	t.links = nil
	// A probe that would not go may still send; then only the flush ends Read.
	if len(errs) == 0 {
		t.detached.Store(true)
	}

	if t.reader != nil {
		if err := t.reader.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("flush ring buffer: %w", err))
		}
	}
	t.wake()
	return errors.Join(errs...)
}

// wake has a Read waiting in the network poller look at the ring again at once.
func (t *Tracer) wake() {
	t.waking.Store(true)
	if t.ring != nil {
		t.ring.SetReadDeadline(time.Now())
	}
}

// Close removes the probes and frees the ring buffer and the BPF programs. The target
// keeps running.
func (t *Tracer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.closed {
		return nil
	}
	t.closed = true

	errs := []error{t.stopLocked()}
	if t.ring != nil {
		errs = append(errs, t.ring.Close())
	}
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}

// Counters reports what the probes could not deliver, summed over CPUs, and how many
// requests are in flight now.
func (t *Tracer) Counters() (Counters, error) {
	var c Counters
	var started, completed uint64
	fields := map[bpfCounter]*uint64{
		bpfCounterCOUNTER_RINGBUF_FULL:   &c.RingFull,
		bpfCounterCOUNTER_NO_SLOT:        &c.NoSlot,
		bpfCounterCOUNTER_VERDICT_ORPHAN: &c.VerdictOrphan,
		bpfCounterCOUNTER_LATE:           &c.Late,
		bpfCounterCOUNTER_ACCEPTED_FULL:  &c.AcceptedFull,
		bpfCounterCOUNTER_STARTED:        &started,
		bpfCounterCOUNTER_COMPLETED:      &completed,
	}
	for idx, dst := range fields {
		var perCPU []uint64
		if err := t.objs.Counters.Lookup(uint32(idx), &perCPU); err != nil {
			return c, fmt.Errorf("read counter %d: %w", idx, err)
		}
		for _, n := range perCPU {
			*dst += n
		}
	}

	// Task-local storage cannot be listed from user space, so the probes count instead.
	// Per-CPU sums read one CPU after another may be a request apart while probes run.
	if started > completed {
		c.InFlight = started - completed
	}
	return c, nil
}

// ProgramCost is what the BPF program at one probe site cost so far: how often it ran and
// for how long in all. The kernel counts only while BPF statistics are enabled
// (ebpf.EnableStats); the trap that runs the program is not included.
type ProgramCost struct {
	Site    Site
	Runs    uint64
	RunTime time.Duration
}

// ProgramCosts returns the cost of each attached probe's program.
func (t *Tracer) ProgramCosts() ([]ProgramCost, error) {
	progs := []struct {
		site Site
		pl   *Placement
		prog *ebpf.Program
	}{
		{SiteEntry, &t.plan.Entry, t.objs.PreempttraceSigpreempt},
		{SiteVerdict, t.plan.Verdict, t.objs.PreempttraceVerdict},
		{SiteHandled, t.plan.Handled, t.objs.PreempttraceHandled},
		{SiteEntered, t.plan.Entered, t.objs.PreempttraceEntered},
	}
	if len(t.plan.Returns) > 0 {
		// One program serves every return site.
		progs = append(progs, struct {
			site Site
			pl   *Placement
			prog *ebpf.Program
		}{SiteReturn, &t.plan.Returns[0].Placement, t.objs.PreempttraceReturned})
	}

	var out []ProgramCost
	for _, p := range progs {
		if p.pl == nil {
			continue
		}
		st, err := p.prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("read %s program statistics: %w", p.site, err)
		}
		out = append(out, ProgramCost{Site: p.site, Runs: st.RunCount, RunTime: st.Runtime})
	}
	return out, nil
}

// Counters are the tracer's losses and irregularities. Lost() is the number of preemption
// requests that reached the target but not the reader.
type Counters struct {
	// RingFull counts events dropped because the ring buffer was full.
	RingFull uint64
	// NoSlot counts requests dropped because the kernel had no memory for the thread's
	// request slot.
	NoSlot uint64
	// VerdictOrphan counts verdicts seen without their entry. That happens to a request
	// whose SIGURG arrived in the instant before the entry probe went live, which is not
	// part of the trace, and to one NoSlot already counts; so it is no loss of its
	// own, and Lost leaves it out.
	VerdictOrphan uint64
	// Late counts events completed by the next request of their thread instead of the
	// handled probe (EventLate); they are delivered, only later.
	Late uint64
	// InFlight is the number of requests entered but not completed at the time of the call.
	InFlight uint64
	// AcceptedFull counts accepted requests sent without waiting for asyncPreempt's entry,
	// because more threads than the accepted map holds had one waiting; they are
	// delivered, without the confirmation.
	AcceptedFull uint64
}

// Lost returns the number of requests that will never be read.
func (c Counters) Lost() uint64 { return c.RingFull + c.NoSlot }

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// bpfABI returns the probe's configuration for abi.
func bpfABI(abi CallABI) bpfCallAbi {
	return bpfCallAbi{OnStack: boolByte(abi.OnStack), GpSpOff: abi.GpOffset,
		CtxtSpOff: abi.CtxtOffset, OkSpOff: abi.OkOffset, NewpcSpOff: abi.NewpcOffset}
}

// bpfOffsets returns the probe's configuration for o; every member unknown when o is nil.
func bpfOffsets(o *target.StateOffsets) bpfRuntimeOffsets {
	if o == nil {
		return bpfRuntimeOffsets{G_m: -1, G_stackLo: -1, G_atomicstatus: -1, M_curg: -1,
			M_locks: -1, M_mallocing: -1, M_preemptoff: -1, M_p: -1, P_status: -1,
			G_window: -1, M_window: -1, G_secret: -1}
	}

	// The length of m.preemptoff is the string's second word.
	return bpfRuntimeOffsets{G_m: o.GM, G_stackLo: o.GStackLo, G_atomicstatus: o.GAtomicstatus,
		M_curg: o.MCurg, M_locks: o.MLocks, M_mallocing: o.MMallocing,
		M_preemptoff: o.MPreemptoff, M_p: o.MP, P_status: o.PStatus, G_secret: o.GSecret,
		G_window: stateWindow(member{o.GStackLo, 8}, member{o.GM, 8}),
		M_window: stateWindow(member{o.MCurg, 8}, member{o.MLocks, 4},
			member{o.MMallocing, 4}, member{o.MPreemptoff + 8, 8}, member{o.MP, 8}),
	}
}

// member is a struct member's offset and size.
type member struct{ off, size int32 }

// stateWindow returns where a window holding every member starts, or -1 when they span
// more than a window.
func stateWindow(members ...member) int32 {
	lo, hi := members[0].off, members[0].off+members[0].size
	for _, m := range members[1:] {
		lo, hi = min(lo, m.off), max(hi, m.off+m.size)
	}
	if lo < 0 || hi-lo > int32(bpfStateWindowSTATE_WINDOW) {
		return -1
	}
	return lo
}
