// Package report renders the tool's results. Every output format lives here,
// and each JSON shape is a stable, documented contract (see the README):
// fields may be added, never renamed or removed.
package report
