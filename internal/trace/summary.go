package trace

import (
	"cmp"
	"slices"

	"github.com/preempttrace/preempttrace/internal/safepoint"
)

// maxMismatchesKept bounds the mismatches a summary lists; all are counted.
const maxMismatchesKept = 100

// FuncCount is how often attempts were refused in one function.
type FuncCount struct {
	Func   string
	Count  uint64
	Reason safepoint.Reason // the reason seen most in this function
}

// Summary accumulates records. The zero value is ready to use.
type Summary struct {
	Events, Refused, Accepted, NotWanted uint64
	ByReason                             map[safepoint.Reason]uint64
	Mismatches                           uint64
	MismatchList                         []Record
	DecodeErrors                         uint64

	// StateUnknown counts attempts the backend read no thread state for, whose reasons
	// rest on the PC rules alone.
	StateUnknown uint64

	// Entered and EntryMissed count accepted attempts whose goroutine was seen entering
	// asyncPreempt, and those watched for in vain.
	Entered, EntryMissed uint64

	// RuntimeReasons counts attempts whose deciding check the runtime's return showed; the
	// decoder's reason was compared with it unless the attempt had another mismatch or
	// could not be decoded.
	RuntimeReasons uint64

	perFunc map[string]map[safepoint.Reason]uint64
}

// Add counts one record.
func (s *Summary) Add(r *Record) {
	if s.ByReason == nil {
		s.ByReason = map[safepoint.Reason]uint64{}
		s.perFunc = map[string]map[safepoint.Reason]uint64{}
	}
	s.Events++
	s.ByReason[r.Reason]++
	if r.DecodeErr != nil {
		s.DecodeErrors++
	}
	if !r.StateKnown {
		s.StateUnknown++
	}
	if r.RuntimeReasonKnown {
		s.RuntimeReasons++
	}
	if r.Mismatch {
		s.Mismatches++
		if len(s.MismatchList) < maxMismatchesKept {
			s.MismatchList = append(s.MismatchList, *r)
		}
	}

	// The runtime says so when a backend sees its decision; otherwise the decoder
	// predicted it from the state the backend read.
	switch {
	case r.Runtime == RuntimeNotWanted || r.Reason == safepoint.NotWanted:
		s.NotWanted++
		return
	case !r.Refused():
		s.Accepted++
		switch r.Entry {
		case EntrySeen:
			s.Entered++
		case EntryMissed:
			s.EntryMissed++
		}
		return
	}
	s.Refused++
	name := "?"
	if r.Info != nil {
		name = r.Info.Func.Name
	}
	if s.perFunc[name] == nil {
		s.perFunc[name] = map[safepoint.Reason]uint64{}
	}
	s.perFunc[name][r.Reason]++
}

// Top returns the n functions with the most refused attempts.
func (s *Summary) Top(n int) []FuncCount {
	var out []FuncCount
	for name, reasons := range s.perFunc {
		fc := FuncCount{Func: name}
		var most uint64
		for _, reason := range safepoint.Reasons() {
			c := reasons[reason]
			fc.Count += c
			if c > most {
				fc.Reason, most = reason, c
			}
		}
		out = append(out, fc)
	}
	slices.SortFunc(out, func(a, b FuncCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Func, b.Func)
	})
	return out[:min(n, len(out))]
}
