// Command preempttrace shows where and why a Go program refuses asynchronous
// preemption. See the README for usage.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "preempttrace: %s\n", userMessage(err))
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "preempttrace",
		Short: "Show where and why a Go program refuses asynchronous preemption",
		Long: `preempttrace explains why the Go runtime could not stop a goroutine with its
preemption signal (SIGURG): assembly, NO_LOCAL_POINTERS assembly, compiler-marked
unsafe points, runtime code, or a busy M. It decodes the binary's own pclntab and
funcdata and applies the rules of runtime.isAsyncSafePoint for the exact Go
release (1.14 through 1.27) that built it.`,
		Example: `  # watch a running process: every refused preemption, live, until Ctrl-C
  sudo preempttrace -p 4242

  # the same for 30 s as JSON lines, checking the decoder against the runtime
  sudo preempttrace -p 4242 --duration 30s --verify -o json

  # the same without eBPF (no CAP_SYS_ADMIN, lockdown, seccomp): ptrace
  sudo preempttrace -p 4242 --backend ptrace

  # as a sidecar: wait for the application called "server" to start, then trace it
  preempttrace --name server --wait -o json

  # a built-in workload that refuses preemption in every way
  sudo preempttrace demo

  # every function where preemption is refused, worst first
  preempttrace scan ./server

  # what the runtime decides at one PC, a function, or a function offset
  preempttrace explain ./server 0x4a1f20 main.hotLoop main.hotLoop+0x1c

  # the same for a running process (addresses as the process sees them)
  sudo preempttrace explain --pid 4242 0x55d1c04a1f20`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          positional(cobra.NoArgs),
	}
	a := liveArgs{output: "text", backend: backendAuto}
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		if a.pid == 0 && a.name == "" {
			return cmd.Help()
		}
		if err := a.check(); err != nil {
			return err
		}
		return runLive(cmd.Context(), a, os.Stdout, os.Stderr)
	}
	root.Flags().IntVarP(&a.pid, "pid", "p", 0, "trace the running process PID")
	root.Flags().StringVarP(&a.name, "name", "n", "",
		"trace the one process whose executable (or command name) is NAME")
	root.Flags().BoolVar(&a.wait, "wait", false,
		"with --name: wait for the process to start (for a sidecar)")
	root.Flags().DurationVar(&a.duration, "duration", 0, "stop after this long (default: Ctrl-C)")
	addOutputFlags(root, &a)

	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newScanCmd(), newExplainCmd(), newDemoCmd(), newWorkloadCmd())
	return root
}

// positional checks argument counts and reports misuse as a usage error.
func positional(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w (see --help)", cmd.CommandPath(), err)}
		}
		return nil
	}
}
