package target

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// commLen is the longest command name the kernel keeps (TASK_COMM_LEN less the NUL):
// /proc/PID/comm holds the first 15 bytes of the executable's name.
const commLen = 15

// FindByName returns, in increasing order, the processes other than the caller whose
// executable is called name (the base name of /proc/PID/exe) or whose command name
// (/proc/PID/comm, which a program may change) is name. The kernel cuts command names to
// 15 bytes, so a name of 15 bytes or more, which may be such a cut, is matched against
// executables only.
// Processes whose executable cannot be read, such as kernel threads and zombies, or
// those of other users without CAP_SYS_PTRACE, are left out.
func FindByName(name string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}

	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if named(pid, name) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// named reports whether the process pid is called name.
func named(pid int, name string) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return false
	}

	// A deleted executable's link ends in " (deleted)"; it is still the program running.
	if filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == name {
		return true
	}
	if len(name) >= commLen {
		return false
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err == nil && strings.TrimSuffix(string(comm), "\n") == name
}
