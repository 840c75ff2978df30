package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/preempttrace/preempttrace/internal/audit"
	"github.com/preempttrace/preempttrace/internal/report"
)

func newScanCmd() *cobra.Command {
	var (
		bin    binaryArgs
		asJSON bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "scan [--json] [--limit N] (BINARY | --pid PID)",
		Short: "List every function where async preemption is refused, worst first",
		Long: `scan decodes every function of a Go binary and classifies each PC with the
PC-only rules of runtime.isAsyncSafePoint for the binary's Go release. It lists
the functions that refuse preemption at some or all of their PCs, with the
reasons and how many bytes of code refuse, largest first, and totals by reason.

Thread state (is the M busy, is there stack room) is not known at rest; scan
reports what the code itself decides.`,
		Example: `  preempttrace scan ./server
  preempttrace scan --limit 0 ./server          # every refusing function
  preempttrace scan --json ./server | jq '.by_reason'
  sudo preempttrace scan --pid 4242`,
		Args: positional(func(cmd *cobra.Command, args []string) error {
			if bin.pid != 0 {
				return cobra.NoArgs(cmd, args)
			}
			if len(args) != 1 {
				return errors.New("need one BINARY or --pid PID")
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) > 0 {
				path = args[0]
			}
			o, err := bin.open(path)
			if err != nil {
				return err
			}
			defer o.file.Close()

			rep := audit.Scan(o.file, o.rules)
			if asJSON {
				return report.ScanJSON(os.Stdout, o.name, rep)
			}
			return report.ScanText(os.Stdout, o.name, rep, limit)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (schema in the README)")
	cmd.Flags().IntVar(&limit, "limit", 30, "functions to list in text output (0: all)")
	cmd.Flags().IntVarP(&bin.pid, "pid", "p", 0, "scan the executable of a running process")
	return cmd
}
