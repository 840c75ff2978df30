//go:build linux

package probe

import "testing"

// TestStateWindow: the windows start at the lowest member and hold every member whole, or
// are off when the members spread wider than STATE_WINDOW.
func TestStateWindow(t *testing.T) {
	tests := []struct {
		name    string
		members []member
		want    int32
	}{
		{"g of Go 1.26", []member{{0, 8}, {48, 8}}, 0},
		{"m of Go 1.26", []member{{184, 8}, {264, 4}, {240, 4}, {256, 8}, {208, 8}}, 184},
		{"exactly a window", []member{{100, 8}, {220, 8}}, 100},
		{"a byte too wide", []member{{100, 8}, {221, 8}}, -1},
		{"unknown member", []member{{-1, 8}, {8, 8}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stateWindow(tt.members...); got != tt.want {
				t.Errorf("stateWindow = %d, want %d", got, tt.want)
			}
		})
	}
}
