package symtab

import (
	"encoding/binary"
	"testing"
)

// zigzag encodes a value delta the way the linker does.
func zigzag(d int32) uint32 { return uint32(d<<1) ^ uint32(d>>31) }

// encodeTable builds a pc-value table from (value, run length) pairs.
func encodeTable(quantum uint64, runs [][2]int32) []byte {
	var out []byte
	val := int32(-1)
	for _, r := range runs {
		out = binary.AppendUvarint(out, uint64(zigzag(r[0]-val)))
		out = binary.AppendUvarint(out, uint64(uint64(r[1])/quantum))
		val = r[0]
	}
	return append(out, 0)
}

// tableFile builds a File whose pc tables are exactly table, for one function.
func tableFile(quantum uint64, table []byte) (*File, *Func) {
	data := append(make([]byte, 8), table...) // offset 0 means "no table"
	f := &File{
		tab: &pclntab{data: data, quantum: uint32(quantum)},
		lay: &layouts[len(layouts)-1],
	}
	fn := &Func{Name: "f", Entry: 0x1000, End: 0x1100, pcsp: 8}
	return f, fn
}

func TestPCValue(t *testing.T) {
	// -1 for 4 bytes, -2 for 12, 0 for 16, -1 for 8 (the first value is the
	// same as the initial -1, so its delta byte is 0 and must not end the table).
	runs := [][2]int32{{-1, 4}, {-2, 12}, {0, 16}, {-1, 8}}
	for _, quantum := range []uint64{1, 4} {
		f, fn := tableFile(quantum, encodeTable(quantum, runs))
		tests := []struct {
			pc        uint64
			val       int32
			start     uint64
			isPadding bool
		}{
			{0x1000, -1, 0x1000, false},
			{0x1003, -1, 0x1000, false},
			{0x1004, -2, 0x1004, false},
			{0x100f, -2, 0x1004, false},
			{0x1010, 0, 0x1010, false},
			{0x1027, -1, 0x1020, false},
			{0x1028, 0, 0, true},
		}
		for _, tt := range tests {
			val, start, err := f.PCValue(fn, TableSP, tt.pc)
			if tt.isPadding {
				if err == nil {
					t.Errorf("quantum %d pc %#x: no error past the table", quantum, tt.pc)
				}
				continue
			}
			if err != nil || val != tt.val || start != tt.start {
				t.Errorf("quantum %d pc %#x = %d from %#x (%v), want %d from %#x",
					quantum, tt.pc, val, start, err, tt.val, tt.start)
			}
		}

		got, err := f.Runs(fn, TableSP)
		if err != nil || len(got) != len(runs) {
			t.Fatalf("Runs = %v, %v", got, err)
		}
		if max, _ := f.MaxSPDelta(fn); max != 0 {
			t.Errorf("MaxSPDelta = %d, want 0", max)
		}
	}
}

func TestPCValueNoTable(t *testing.T) {
	f, fn := tableFile(1, nil)
	fn.pcsp = 0
	if val, _, err := f.PCValue(fn, TableSP, 0x1000); val != -1 || err != nil {
		t.Errorf("missing table = %d, %v; want -1 as the runtime does", val, err)
	}
}

func TestPCValueTruncated(t *testing.T) {
	f, fn := tableFile(1, []byte{0x83}) // a varint that never ends
	if _, _, err := f.PCValue(fn, TableSP, 0x1000); err == nil {
		t.Error("truncated table decoded without error")
	}
}
