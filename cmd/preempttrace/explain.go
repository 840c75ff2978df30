package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/preempttrace/preempttrace/internal/audit"
	"github.com/preempttrace/preempttrace/internal/report"
)

func newExplainCmd() *cobra.Command {
	var (
		bin    binaryArgs
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "explain [--json] (BINARY | --pid PID) TARGET...",
		Short: "Decode PCs and tell what the runtime decides there",
		Long: `explain decodes each TARGET — 0xADDR, FUNC or FUNC+0xOFF — through the binary's
pclntab and funcdata: function, source line, inlined frames, unsafe-point value,
locals pointer map, flags, SP delta, and the verdict of runtime.isAsyncSafePoint
for the binary's Go release with the rule that decided it.

With --pid, addresses are taken as the running process sees them (the load
address of a PIE is accounted for).`,
		Example: `  preempttrace explain ./server main.hotLoop
  preempttrace explain ./server 'main.hotLoop+0x1c' 0x4a1f20
  preempttrace explain --json ./server runtime.memmove | jq '.[0].reason'`,
		Args: positional(func(cmd *cobra.Command, args []string) error {
			if bin.pid != 0 && len(args) < 1 {
				return errors.New("need at least one TARGET")
			}
			if bin.pid == 0 && len(args) < 2 {
				return errors.New("need a BINARY and at least one TARGET")
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, targets := "", args
			if bin.pid == 0 {
				path, targets = args[0], args[1:]
			}
			o, err := bin.open(path)
			if err != nil {
				return err
			}
			defer o.file.Close()

			var es []*audit.Explanation
			for _, t := range targets {
				e, err := audit.Explain(o.file, o.rules, t, o.bias)
				if err != nil {
					return err
				}
				es = append(es, e)
			}
			if asJSON {
				return report.ExplainJSON(os.Stdout, es, o.bias)
			}
			return report.ExplainText(os.Stdout, es, o.bias)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, one object per target")
	cmd.Flags().IntVarP(&bin.pid, "pid", "p", 0, "explain addresses of a running process")
	return cmd
}
