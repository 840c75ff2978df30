package report

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/preempttrace/preempttrace/internal/safepoint"
	"github.com/preempttrace/preempttrace/internal/trace"
)

// LiveText writes one line per attempt for a terminal:
//
//	15:04:05.000123 tid 4242 g 17  main.nosplitSpin+0x8  main.go:41  unsafe-point
func LiveText(w io.Writer, r *trace.Record) error {
	g := "?"
	if r.GoIDKnown {
		g = fmt.Sprint(r.GoID)
	}
	where, pos := fmt.Sprintf("%#x", r.PC), "-"
	if r.Info != nil {
		where = fmt.Sprintf("%s+%#x", ShortName(r.Info.Func.Name), r.Info.PC-r.Info.Func.Entry)
		pos = fmt.Sprintf("%s:%d", filepath.Base(r.Info.File), r.Info.Line)
		if len(r.Info.Frames) > 1 {
			where += " (in " + ShortName(r.Info.Frames[0].Func) + ")"
		}
	}
	verdict := r.Reason.String()
	if !r.Refused() {
		verdict = "accepted"
	}
	line := fmt.Sprintf("%s tid %-7d g %-6s %-40s %-22s %s", r.Time.Format("15:04:05.000000"),
		r.TID, g, where, pos, verdict)
	if r.Mismatch {
		line += "  MISMATCH: " + r.Why
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

type attemptJSON struct {
	Type           string            `json:"type"`
	Time           time.Time         `json:"time"`
	PID            int               `json:"pid"`
	TID            int               `json:"tid"`
	GoID           *uint64           `json:"goid"`
	PC             hex               `json:"pc"`
	Func           string            `json:"func,omitempty"`
	File           string            `json:"file,omitempty"`
	Line           int               `json:"line,omitempty"`
	Inlined        []frameJSON       `json:"inlined"`
	Reason         safepoint.Reason  `json:"reason"`
	Verdict        string            `json:"verdict"`
	RuntimeVerdict string            `json:"runtime_verdict"`
	RuntimeReason  *safepoint.Reason `json:"runtime_reason,omitempty"`
	ResumePC       *hex              `json:"resume_pc"`
	StateUnchecked bool              `json:"state_unchecked"`
	Mismatch       string            `json:"mismatch,omitempty"`
	Sender         string            `json:"sender"`
	Entered        *bool             `json:"entered_async_preempt,omitempty"`
}

// LiveJSON writes one attempt as a JSON line (schema in the README).
func LiveJSON(w io.Writer, r *trace.Record) error {
	out := attemptJSON{
		Type: "preempt", Time: r.Time, PID: r.PID, TID: r.TID, PC: hex(r.PC),
		Inlined: []frameJSON{}, Reason: r.Reason, Verdict: "refused",
		RuntimeVerdict: r.Runtime.String(), Mismatch: r.Why,
		StateUnchecked: r.Predicted.StateUnchecked, Sender: r.Origin.String(),
	}
	if !r.Refused() {
		out.Verdict = "accepted"
	}
	if r.GoIDKnown {
		out.GoID = &r.GoID
	}
	if r.Runtime == trace.RuntimeAccepted {
		pc := hex(r.ResumePC)
		out.ResumePC = &pc
	}
	if r.RuntimeReasonKnown {
		out.RuntimeReason = &r.RuntimeReason
	}
	if r.Entry != trace.EntryUnknown {
		seen := r.Entry == trace.EntrySeen
		out.Entered = &seen
	}
	if info := r.Info; info != nil {
		out.Func, out.File, out.Line = info.Func.Name, info.File, info.Line
		if len(info.Frames) > 1 {
			for _, fr := range info.Frames {
				out.Inlined = append(out.Inlined, frameJSON{fr.Func, fr.File, fr.Line})
			}
		}
	}
	return json.NewEncoder(w).Encode(out)
}

// Totals are the counts a live summary adds to the decoded records: what the
// backend lost or could not observe.
type Totals struct {
	Dropped  uint64 // attempts the backend lost
	InFlight uint64 // attempts under way when tracing stopped, never completed
	Late     uint64 // attempts completed late, by the next one of their thread
	Duration time.Duration
	Backend  string // "ebpf" or "ptrace"
}

type topJSON struct {
	Func   string           `json:"func"`
	Count  uint64           `json:"count"`
	Reason safepoint.Reason `json:"reason"`
}

type summaryJSON struct {
	Type           string                      `json:"type"`
	Backend        string                      `json:"backend"`
	Events         uint64                      `json:"events"`
	Refused        uint64                      `json:"refused"`
	Accepted       uint64                      `json:"accepted"`
	NotWanted      uint64                      `json:"not_wanted"`
	Dropped        uint64                      `json:"dropped"`
	InFlight       uint64                      `json:"in_flight"`
	Late           uint64                      `json:"late"`
	Mismatches     uint64                      `json:"mismatches"`
	DecodeErrors   uint64                      `json:"decode_errors"`
	StateUnknown   uint64                      `json:"state_unknown"`
	Entered        uint64                      `json:"entered_async_preempt"`
	EntryMissed    uint64                      `json:"entry_missed"`
	RuntimeReasons uint64                      `json:"runtime_reasons"`
	Seconds        float64                     `json:"seconds"`
	ByReason       map[safepoint.Reason]uint64 `json:"by_reason"`
	Top            []topJSON                   `json:"top"`
}

// summaryTop is how many functions a summary names.
const summaryTop = 10

// SummaryJSON writes the closing summary line.
func SummaryJSON(w io.Writer, s *trace.Summary, t Totals) error {
	out := summaryJSON{
		Type: "summary", Backend: t.Backend, Events: s.Events, Refused: s.Refused, Accepted: s.Accepted,
		NotWanted: s.NotWanted, Dropped: t.Dropped, InFlight: t.InFlight, Late: t.Late,
		Mismatches:   s.Mismatches,
		DecodeErrors: s.DecodeErrors, StateUnknown: s.StateUnknown,
		Entered: s.Entered, EntryMissed: s.EntryMissed, RuntimeReasons: s.RuntimeReasons,
		Seconds:  t.Duration.Seconds(),
		ByReason: s.ByReason, Top: []topJSON{},
	}
	if out.ByReason == nil {
		out.ByReason = map[safepoint.Reason]uint64{}
	}
	for _, fc := range s.Top(summaryTop) {
		out.Top = append(out.Top, topJSON{fc.Func, fc.Count, fc.Reason})
	}
	return json.NewEncoder(w).Encode(out)
}

// SummaryText writes the closing summary for a terminal.
func SummaryText(w io.Writer, s *trace.Summary, t Totals) error {
	fmt.Fprintf(w, "\n%d attempts in %.1fs: %d refused, %d accepted, %d not wanted; "+
		"%d dropped, %d mismatches\n", s.Events, t.Duration.Seconds(), s.Refused, s.Accepted,
		s.NotWanted, t.Dropped, s.Mismatches)
	if s.DecodeErrors > 0 {
		fmt.Fprintf(w, "%d attempts could not be decoded\n", s.DecodeErrors)
	}
	if s.StateUnknown > 0 {
		fmt.Fprintf(w, "%d attempts without the thread's state: their reasons rest on the PC "+
			"alone\n", s.StateUnknown)
	}
	if s.Entered > 0 || s.EntryMissed > 0 {
		fmt.Fprintf(w, "%d accepted attempts seen entering asyncPreempt, %d watched for in vain\n",
			s.Entered, s.EntryMissed)
	}
	if s.RuntimeReasons > 0 {
		fmt.Fprintf(w, "%d attempts with the check that decided, by the return the runtime took\n",
			s.RuntimeReasons)
	}
	if t.InFlight > 0 || t.Late > 0 {
		fmt.Fprintf(w, "%d attempts still in the handler when tracing stopped, %d completed late\n",
			t.InFlight, t.Late)
	}
	if len(s.ByReason) > 0 {
		fmt.Fprintln(w, "\nBy reason:")
		for _, r := range safepoint.Reasons() {
			if n := s.ByReason[r]; n > 0 {
				fmt.Fprintf(w, "  %-22s %8d\n", r, n)
			}
		}
	}
	if top := s.Top(summaryTop); len(top) > 0 {
		fmt.Fprintln(w, "\nTop refusing functions:")
		for _, fc := range top {
			name := fc.Func
			if name == "?" {
				name = "(outside Go code)"
			}
			fmt.Fprintf(w, "  %8d  %-22s %s\n", fc.Count, fc.Reason, name)
		}
	}
	for _, m := range s.MismatchList {
		fmt.Fprintf(w, "mismatch at %#x: %s\n", m.PC, m.Why)
	}
	if uint64(len(s.MismatchList)) < s.Mismatches {
		fmt.Fprintf(w, "… %d more mismatches\n", s.Mismatches-uint64(len(s.MismatchList)))
	}
	return nil
}

// ShortName drops the import path before a function's package name, which
// text output has no room for: "github.com/x/y/internal/w.f" becomes "w.f".
func ShortName(name string) string {
	// Type arguments of generic functions may hold paths of their own.
	head := name
	if i := strings.IndexByte(name, '['); i >= 0 {
		head = name[:i]
	}
	return name[strings.LastIndex(head, "/")+1:]
}
