package target

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// StatusField returns the value of one field of /proc/PID/status, such as "TracerPid",
// "NSpid" or "CapEff", without its name and surrounding blanks. PID may be a thread ID.
func StatusField(pid int, name string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no %s in /proc/%d/status", name, pid)
}

// EffectiveCaps returns the effective capability mask of the calling process.
func EffectiveCaps() (uint64, error) {
	v, err := StatusField(os.Getpid(), "CapEff")
	if err != nil {
		return 0, err
	}
	caps, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("parse CapEff %q: %w", v, err)
	}
	return caps, nil
}
