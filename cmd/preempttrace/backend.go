//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/preempttrace/preempttrace/internal/probe"
	"github.com/preempttrace/preempttrace/internal/ptrace"
	"github.com/preempttrace/preempttrace/internal/report"
	"github.com/preempttrace/preempttrace/internal/symtab"
	"github.com/preempttrace/preempttrace/internal/target"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// The backends --backend accepts.
const (
	backendAuto   = "auto"
	backendEBPF   = "ebpf"
	backendPtrace = "ptrace"
)

// errBackendStopped is what backend.next returns once tracing stopped and every attempt
// was read.
var errBackendStopped = errors.New("backend stopped")

// backend is a tracer attached to the target, whichever mechanism it uses.
type backend interface {
	// name is "ebpf" or "ptrace", as the summary reports it.
	name() string
	// next blocks for the next attempt; errBackendStopped after stop and the drain.
	next() (trace.Attempt, error)
	// stop ends tracing; next still returns what was already seen.
	stop() error
	// close detaches for good.
	close() error
	// losses is what the backend saw but could not report.
	losses() (report.Totals, error)
	// notes are lines worth telling the user once attached.
	notes() []string
}

// attachRequest is what every backend needs to attach.
type attachRequest struct {
	pid   int
	exe   string
	image target.Image // the program file describes
	file  *symtab.File
	offs  target.RuntimeOffsets

	// verify asks the backend to check what it can of the runtime's decisions, at a cost:
	// the eBPF backend then confirms each accepted request at asyncPreempt's entry.
	verify bool
}

// attachBackend attaches the backend kind names. auto tries eBPF and falls back to ptrace,
// saying why on w.
func attachBackend(kind string, req attachRequest, w io.Writer) (backend, error) {
	switch kind {
	case backendEBPF:
		return attachEBPF(req)
	case backendPtrace:
		return attachPtrace(req)
	}

	b, err := attachEBPF(req)
	if err == nil {
		return b, nil
	}
	fmt.Fprintf(w, "preempttrace: eBPF unavailable (%v); using ptrace\n", err)
	b, perr := attachPtrace(req)
	if perr != nil {
		return nil, fmt.Errorf("%w (eBPF was unavailable too: %v)", perr, err)
	}
	return b, nil
}

// ebpfBackend is the uprobe tracer.
type ebpfBackend struct{ tr *probe.Tracer }

func attachEBPF(req attachRequest) (backend, error) {
	if err := probe.Preflight(); err != nil {
		return nil, err
	}
	tr, err := probe.Attach(probe.Options{PID: req.pid, Exe: req.exe, Symtab: req.file,
		Goid: req.offs.Goid, State: req.offs.State, ConfirmAccepted: req.verify,
		ObserveReturns: req.verify})
	if err != nil {
		return nil, err
	}
	return ebpfBackend{tr}, nil
}

func (b ebpfBackend) name() string { return backendEBPF }

func (b ebpfBackend) next() (trace.Attempt, error) {
	ev, err := b.tr.Read()
	if errors.Is(err, probe.ErrStopped) {
		return trace.Attempt{}, errBackendStopped
	}
	if err != nil {
		return trace.Attempt{}, err
	}
	return b.tr.Attempt(&ev), nil
}

func (b ebpfBackend) stop() error  { return b.tr.Stop() }
func (b ebpfBackend) close() error { return b.tr.Close() }

func (b ebpfBackend) losses() (report.Totals, error) {
	c, err := b.tr.Counters()
	if err != nil {
		return report.Totals{}, fmt.Errorf("read drop counters: %w", err)
	}
	return report.Totals{Dropped: c.Lost(), InFlight: c.InFlight, Late: c.Late}, nil
}

func (b ebpfBackend) notes() []string {
	var out []string
	for _, why := range b.tr.Plan().Missing {
		effect := "runtime verdicts partly unknown"
		switch {
		case strings.HasPrefix(why, string(probe.SiteEntered)+":"):
			effect = "accepted attempts not confirmed"
		case strings.HasPrefix(why, string(probe.SiteReturn)+":"):
			effect = "the runtime's deciding checks not seen"
		}
		out = append(out, "probe left out, "+effect+": "+why)
	}
	return out
}

// ptraceBackend is the ptrace tracer.
type ptraceBackend struct{ tr *ptrace.Tracer }

func attachPtrace(req attachRequest) (backend, error) {
	tr, err := ptrace.Attach(ptrace.Options{PID: req.pid, Exe: req.exe, Goid: req.offs.Goid,
		State: req.offs.State, Image: req.image})
	if err != nil {
		return nil, err
	}
	return ptraceBackend{tr}, nil
}

func (b ptraceBackend) name() string { return backendPtrace }

func (b ptraceBackend) next() (trace.Attempt, error) {
	a, err := b.tr.Read()
	if errors.Is(err, ptrace.ErrStopped) {
		return trace.Attempt{}, errBackendStopped
	}
	return a, err
}

func (b ptraceBackend) stop() error  { return b.tr.Stop() }
func (b ptraceBackend) close() error { return b.tr.Close() }

func (b ptraceBackend) losses() (report.Totals, error) {
	c := b.tr.Counters()
	return report.Totals{Dropped: c.Dropped}, nil
}

func (b ptraceBackend) notes() []string {
	return []string{"ptrace: the runtime's own verdicts are not observed; " +
		"reasons are the decoder's, from the PC and the thread state"}
}
