//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/preempttrace/preempttrace/internal/workload"
)

// workloadCmd is the hidden subcommand the demo re-executes itself with.
const workloadCmd = "__workload"

func newDemoCmd() *cobra.Command {
	a := liveArgs{output: "text", backend: backendAuto}
	cmd := &cobra.Command{
		Use:   "demo [--backend B] [--duration D] [-o text|json] [--all-events] [--verify]",
		Short: "Trace a built-in workload that refuses preemption in every way",
		Long: `demo starts a workload (this binary, re-executed) whose goroutines spin in an
assembly loop, a NO_LOCAL_POINTERS assembly loop, a nosplit loop, a large clear
and a plain loop while the main goroutine allocates, and traces it live. Needs
the same privileges as tracing any process: root for eBPF (creating uprobes
needs CAP_SYS_ADMIN on current kernels), else CAP_SYS_PTRACE for ptrace, which
the default backend falls back to.`,
		Example: `  sudo preempttrace demo
  sudo preempttrace demo --backend ptrace
  sudo preempttrace demo --duration 10s --verify
  sudo preempttrace demo -o json | jq -c 'select(.type=="summary")'`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.check(); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own executable: %w", err)
			}
			child := exec.Command(self, workloadCmd, a.duration.String())
			child.Stdout, child.Stderr = os.Stderr, os.Stderr
			// The workload must not outlive the demo, however the demo ends.
			child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := child.Start(); err != nil {
				return fmt.Errorf("start workload: %w", err)
			}

			a.pid, a.duration = child.Process.Pid, 0 // stop when the workload exits
			traceErr := runLive(cmd.Context(), a, os.Stdout, os.Stderr)

			// Stopped early (Ctrl-C, an error): end the workload too.
			child.Process.Signal(syscall.SIGTERM)
			waitErr := child.Wait()
			if traceErr != nil {
				return traceErr
			}
			if waitErr != nil && !stoppedBy(waitErr, syscall.SIGTERM) {
				return fmt.Errorf("workload: %w", waitErr)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&a.duration, "duration", 5*time.Second, "how long the workload runs")
	addOutputFlags(cmd, &a)
	return cmd
}

func newWorkloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:    workloadCmd + " DURATION",
		Hidden: true,
		Args:   positional(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			d, err := time.ParseDuration(args[0])
			if err != nil {
				return usageError{err}
			}
			workload.Run(os.Stdout, d)
			return nil
		},
	}
}

// addOutputFlags declares the flags live tracing and the demo share.
func addOutputFlags(cmd *cobra.Command, a *liveArgs) {
	cmd.Flags().StringVarP(&a.output, "output", "o", "text", "text or json (JSON lines)")
	cmd.Flags().BoolVar(&a.allEvents, "all-events", false, "print accepted attempts too")
	cmd.Flags().BoolVar(&a.verify, "verify", false,
		"print each attempt where the runtime's decision or deciding check differs from the\n"+
			"decoder's (with eBPF, one more single-stepped uprobe per decided attempt)")
	cmd.Flags().StringVar(&a.backend, "backend", backendAuto,
		"auto (eBPF, else ptrace), ebpf or ptrace")
}

// stoppedBy reports whether err says the process died of sig.
func stoppedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}
