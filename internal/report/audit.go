package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/preempttrace/preempttrace/internal/audit"
	"github.com/preempttrace/preempttrace/internal/safepoint"
)

// hex is an address rendered as a "0x…" JSON string, since JSON numbers lose
// precision above 2^53.
type hex uint64

func (h hex) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%#x", uint64(h)), nil }

type scanJSON struct {
	Binary        string                      `json:"binary"`
	GoVersion     string                      `json:"go_version"`
	Arch          string                      `json:"arch"`
	Functions     int                         `json:"functions"`
	Refusing      []refusalJSON               `json:"refusing"`
	ByReason      map[safepoint.Reason]int    `json:"by_reason"`
	BytesByReason map[safepoint.Reason]uint64 `json:"refused_bytes_by_reason"`
	Undecodable   int                         `json:"undecodable"`
	FirstError    string                      `json:"first_error,omitempty"`
}

type refusalJSON struct {
	Func         string                      `json:"func"`
	Entry        hex                         `json:"entry"`
	Size         uint64                      `json:"size"`
	Reason       safepoint.Reason            `json:"reason"`
	RefusedBytes uint64                      `json:"refused_bytes"`
	Reasons      map[safepoint.Reason]uint64 `json:"reasons"`
}

// ScanJSON writes the scan report as one JSON object.
func ScanJSON(w io.Writer, binary string, rep *audit.ScanReport) error {
	out := scanJSON{
		Binary:        binary,
		GoVersion:     rep.Version.Raw,
		Arch:          string(rep.Arch),
		Functions:     rep.Functions,
		Refusing:      make([]refusalJSON, 0, len(rep.Refusing)),
		ByReason:      rep.FuncsByReason,
		BytesByReason: rep.BytesByReason,
		Undecodable:   rep.Undecodable,
	}
	if rep.FirstError != nil {
		out.FirstError = rep.FirstError.Error()
	}
	for _, r := range rep.Refusing {
		out.Refusing = append(out.Refusing, refusalJSON{
			Func: r.Func, Entry: hex(r.Entry), Size: r.Size, Reason: r.Reason,
			RefusedBytes: r.RefusedBytes, Reasons: r.Reasons,
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// ScanText writes the scan report for a terminal: the top limit functions
// (all when limit ≤ 0), then totals by reason.
func ScanText(w io.Writer, binary string, rep *audit.ScanReport, limit int) error {
	fmt.Fprintf(w, "%s: %s %s, %d functions, %d refuse async preemption at some PCs\n\n",
		binary, rep.Version.Raw, rep.Arch, rep.Functions, len(rep.Refusing))

	fmt.Fprintf(w, "%9s %8s %6s  %-24s %s\n", "REFUSED", "SIZE", "SHARE", "REASON", "FUNCTION")
	shown := rep.Refusing
	if limit > 0 && len(shown) > limit {
		shown = shown[:limit]
	}
	for _, r := range shown {
		share := 100 * float64(r.RefusedBytes) / float64(max(r.Size, 1))
		fmt.Fprintf(w, "%9d %8d %5.1f%%  %-24s %s\n", r.RefusedBytes, r.Size, share,
			reasonList(r), r.Func)
	}
	if len(shown) < len(rep.Refusing) {
		fmt.Fprintf(w, "… %d more (--limit 0 shows all, --json gives everything)\n",
			len(rep.Refusing)-len(shown))
	}

	fmt.Fprintln(w, "\nBy reason (functions, refused bytes):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, reason := range safepoint.Reasons() {
		if n := rep.FuncsByReason[reason]; n > 0 {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", reason, n, rep.BytesByReason[reason],
				reason.Describe())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.Undecodable > 0 {
		fmt.Fprintf(w, "\n%d functions could not be decoded; first: %v\n", rep.Undecodable,
			rep.FirstError)
	}
	return nil
}

// reasonList names the main reason, with "+N" when others also refuse.
func reasonList(r audit.FuncRefusal) string {
	if len(r.Reasons) > 1 {
		return fmt.Sprintf("%s +%d", r.Reason, len(r.Reasons)-1)
	}
	return r.Reason.String()
}

type frameJSON struct {
	Func string `json:"func"`
	File string `json:"file"`
	Line int    `json:"line"`
}

type explainJSON struct {
	Target           string           `json:"target"`
	PC               hex              `json:"pc"`
	Func             string           `json:"func,omitempty"`
	Entry            hex              `json:"entry,omitempty"`
	Offset           hex              `json:"offset,omitempty"`
	File             string           `json:"file,omitempty"`
	Line             int              `json:"line,omitempty"`
	Inlined          []frameJSON      `json:"inlined"`
	UnsafePoint      *int32           `json:"unsafe_point"`
	UnsafePointStart hex              `json:"unsafe_point_start,omitempty"`
	LocalsPointerMap string           `json:"locals_pointer_map,omitempty"`
	Flags            string           `json:"flags"`
	FuncID           *uint8           `json:"func_id"`
	SPDelta          *int32           `json:"sp_delta"`
	MaxFrame         *int32           `json:"max_frame"`
	Verdict          string           `json:"verdict"`
	Reason           safepoint.Reason `json:"reason"`
	Description      string           `json:"description"`
	ResumePC         hex              `json:"resume_pc,omitempty"`
	StateUnchecked   bool             `json:"state_unchecked"`
	BadRestart       bool             `json:"bad_restart,omitempty"`
}

func verdictWord(v safepoint.Verdict) string {
	if v.Accepted() {
		return "accepted"
	}
	return "refused"
}

func toExplainJSON(e *audit.Explanation, bias uint64) explainJSON {
	out := explainJSON{
		Target:         e.Target,
		PC:             hex(e.PC + bias),
		Inlined:        []frameJSON{},
		Verdict:        verdictWord(e.Verdict),
		Reason:         e.Verdict.Reason,
		Description:    e.Verdict.Reason.Describe(),
		StateUnchecked: e.Verdict.StateUnchecked,
		BadRestart:     e.Verdict.BadRestart,
	}
	if e.Verdict.ResumePC != 0 {
		out.ResumePC = hex(e.Verdict.ResumePC + bias)
	}
	info := e.Info
	if info == nil {
		return out
	}
	fn := info.Func
	out.Func, out.Entry, out.Offset = fn.Name, hex(fn.Entry+bias), hex(info.PC-fn.Entry)
	out.File, out.Line = info.File, info.Line
	if len(info.Frames) > 1 {
		for _, fr := range info.Frames {
			out.Inlined = append(out.Inlined, frameJSON{fr.Func, fr.File, fr.Line})
		}
	}
	out.UnsafePoint = &info.UnsafePoint
	if info.UnsafePointStart != 0 {
		out.UnsafePointStart = hex(info.UnsafePointStart + bias)
	}
	out.LocalsPointerMap = info.LocalsMap.String()
	out.Flags = fn.Flag.String()
	out.FuncID, out.SPDelta, out.MaxFrame = &fn.FuncID, &info.SPDelta, &info.MaxSPDelta
	return out
}

// ExplainJSON writes one JSON array with an object per explanation.
func ExplainJSON(w io.Writer, es []*audit.Explanation, bias uint64) error {
	out := make([]explainJSON, 0, len(es))
	for _, e := range es {
		out = append(out, toExplainJSON(e, bias))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// ExplainText writes explanations for a terminal.
func ExplainText(w io.Writer, es []*audit.Explanation, bias uint64) error {
	for i, e := range es {
		if i > 0 {
			fmt.Fprintln(w)
		}
		j := toExplainJSON(e, bias)
		fmt.Fprintf(w, "%s  pc %#x\n", e.Target, uint64(j.PC))
		if e.Info == nil {
			fmt.Fprintf(w, "  not in any Go function\n")
		} else {
			fmt.Fprintf(w, "  function    %s+%#x (entry %#x)\n", j.Func, uint64(j.Offset),
				uint64(j.Entry))
			fmt.Fprintf(w, "  source      %s:%d\n", j.File, j.Line)
			for k, fr := range j.Inlined {
				role := "inlined in"
				if k == 0 {
					role = "inlined   "
				}
				fmt.Fprintf(w, "  %s  %s (%s:%d)\n", role, fr.Func, fr.File, fr.Line)
			}
			flags := j.Flags
			if flags == "" {
				flags = "-"
			}
			run := "no table"
			if j.UnsafePointStart != 0 {
				run = fmt.Sprintf("run from %#x", uint64(j.UnsafePointStart))
			}
			fmt.Fprintf(w, "  pcdata      unsafe-point %d (%s)\n", *j.UnsafePoint, run)
			fmt.Fprintf(w, "  funcdata    locals pointer map %s\n", j.LocalsPointerMap)
			fmt.Fprintf(w, "  func        flags %s, funcID %d, SP delta %d of max %d\n", flags,
				*j.FuncID, *j.SPDelta, *j.MaxFrame)
		}
		fmt.Fprintf(w, "  verdict     %s: %s (%s)\n", strings.ToUpper(j.Verdict), j.Reason,
			j.Description)
		if j.ResumePC != 0 && uint64(j.ResumePC) != uint64(j.PC) {
			fmt.Fprintf(w, "  resumes at  %#x\n", uint64(j.ResumePC))
		}
		if j.StateUnchecked && e.Verdict.Accepted() {
			fmt.Fprintf(w, "  note        thread state is not known at rest; the verdict assumes "+
				"the goroutine was running with an idle M and stack to spare\n")
		}
	}
	return nil
}
