package catalog

import "github.com/santhosh-tekuri/jsonschema/v6"

// Internals the external tests (package catalog_test) look at.

const SchemaDialect = schemaDialect

// CompiledSchema compiles (or returns the cached) schema of a plan.
func (v *Validator) CompiledSchema(p *Plan, k Kind) (*jsonschema.Schema, Schema, error) {
	return v.schema(p, k)
}

// DowngradeReason says what a move from p to q would lose.
func (p *PostgresPlan) DowngradeReason(q *PostgresPlan) string { return p.downgradeReason(q) }
