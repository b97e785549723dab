package postgres

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/strata-dev/strata/catalog"
	"github.com/strata-dev/strata/provisioners"
)

// Masked copies: an instance provisioned with copy_of is bootstrapped by
// CloudNativePG's logical import (pg_dump of the source's database over
// its read-write Service, pg_restore into the copy), then the masking
// rules the developer declared rewrite the masked columns, before any
// client can connect. PostgreSQL Anonymizer is not packaged for the
// operand images, so the rules are plain SQL generated here; every
// strategy is a deterministic function of the value alone, so one value
// masks the same in every table, every copy and every run, and joins on
// masked values still match.

// Masking strategies (the values of copy_of.mask).
const (
	// MaskHash replaces a text value with "h" and 16 hex digits of its
	// SHA-256: distinct values stay distinct (a unique column stays
	// unique), equal values stay equal.
	MaskHash = "hash"
	// MaskEmail replaces a text value with a hash-derived address in the
	// reserved example.invalid domain: still a valid address, never
	// deliverable, unique when the originals were.
	MaskEmail = "email"
	// MaskRedact replaces a text value with the constant "redacted".
	MaskRedact = "redact"
	// MaskNull sets the value to NULL (any type; the column must accept
	// NULL).
	MaskNull = "null"
)

// MaskStrategies are the accepted strategies, as the catalog's schema
// offers them (a test keeps the constants above in step).
var MaskStrategies = catalog.MaskStrategies

// maskColumn is a masking rule's key: schema.table.column, each an
// unquoted lowercase PostgreSQL identifier (what CREATE TABLE makes of an
// unquoted name). Keeping to these also makes every generated statement
// free of anything a developer could inject: the schema checks it, and
// the builder again, since it renders SQL from it.
var maskColumn = regexp.MustCompile(catalog.MaskColumnPattern)

// MaskRule masks one column.
type MaskRule struct {
	Schema, Table, Column string
	Strategy              string
}

// Key is the rule's schema.table.column.
func (r MaskRule) Key() string { return r.Schema + "." + r.Table + "." + r.Column }

// parseMask validates copy_of.mask and returns its rules sorted by column,
// so the generated SQL does not depend on map order.
func parseMask(mask map[string]string) ([]MaskRule, error) {
	rules := make([]MaskRule, 0, len(mask))
	for key, strategy := range mask {
		field := "parameters.copy_of.mask." + key
		if !maskColumn.MatchString(key) {
			return nil, provisioners.ParamErrorf(field, "a masking rule names a column as schema.table.column in lowercase unquoted identifiers (e.g. public.customers.email)")
		}
		if !contains(MaskStrategies, strategy) {
			return nil, provisioners.ParamErrorf(field, "%q is not a masking strategy; use one of %s", strategy, strings.Join(MaskStrategies, ", "))
		}
		parts := strings.Split(key, ".")
		rules = append(rules, MaskRule{Schema: parts[0], Table: parts[1], Column: parts[2], Strategy: strategy})
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].Key() < rules[j].Key() })
	return rules, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// maskExpression is the SQL expression a strategy replaces value (an
// identifier) with. sha256 is built into PostgreSQL (11 and later), so the
// copy needs no extension.
func maskExpression(strategy, value string) string {
	digest := fmt.Sprintf("substr(encode(sha256(convert_to(%s::text, 'UTF8')), 'hex'), 1, 16)", value)
	switch strategy {
	case MaskHash:
		return "'h' || " + digest
	case MaskEmail:
		return "'u' || " + digest + " || '@example.invalid'"
	case MaskRedact:
		return "'redacted'"
	default:
		return "NULL"
	}
}

// MaskSQL is what the copy runs right after the import, as
// postImportApplicationSQL (superuser, in the copied database), or nil
// without rules. The first statement is one DO block, one transaction: it
// checks every rule against the copied schema and masks, or changes
// nothing and fails the import with the rule at fault. A rule is refused
// on a column that is part of a primary key or of a foreign key, on
// either side: masking a key would break the joins (or the constraint),
// and a surrogate key reveals nothing; mask the columns that carry the
// personal data instead. The copy's own triggers do not fire while
// masking (session_replication_role replica): only the masked columns
// change. Then each masked table is rewritten (VACUUM FULL), so the
// original values do not linger in dead row versions on disk.
func MaskSQL(rules []MaskRule) []string {
	if len(rules) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("DO $strata_mask$\nDECLARE\n  rel regclass;\n  col record;\nBEGIN\n")
	b.WriteString("  PERFORM set_config('session_replication_role', 'replica', true);\n")
	var tables []string
	for _, r := range rules {
		table := quoteIdent(r.Schema) + "." + quoteIdent(r.Table)
		if !contains(tables, table) {
			tables = append(tables, table)
		}
		key := r.Key()
		fmt.Fprintf(&b, "  -- %s: %s\n", key, r.Strategy)
		fmt.Fprintf(&b, "  rel := to_regclass('%s');\n", table)
		fmt.Fprintf(&b, "  SELECT a.attnum, a.attnotnull, a.atttypmod, t.typcategory INTO col FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid\n"+
			"    WHERE a.attrelid = rel AND a.attname = '%s' AND a.attnum > 0 AND NOT a.attisdropped;\n", r.Column)
		fmt.Fprintf(&b, "  IF NOT FOUND THEN\n    RAISE EXCEPTION 'masking rule %s: the copied database has no such column; name an existing column (lowercase schema.table.column)';\n  END IF;\n", key)
		fmt.Fprintf(&b, "  IF EXISTS (SELECT FROM pg_catalog.pg_constraint c WHERE (c.contype IN ('p', 'f') AND c.conrelid = rel AND col.attnum = ANY (c.conkey))\n"+
			"      OR (c.contype = 'f' AND c.confrelid = rel AND col.attnum = ANY (c.confkey))) THEN\n"+
			"    RAISE EXCEPTION 'masking rule %s: the column is part of a primary or foreign key, and masking it would break the references to it; mask the columns that hold the personal data, not the keys';\n  END IF;\n", key)
		expr := maskExpression(r.Strategy, quoteIdent(r.Column))
		switch r.Strategy {
		case MaskNull:
			fmt.Fprintf(&b, "  IF col.attnotnull THEN\n    RAISE EXCEPTION 'masking rule %s: the column is NOT NULL; use hash, email or redact on it instead of null';\n  END IF;\n", key)
			fmt.Fprintf(&b, "  UPDATE %s SET %s = NULL WHERE %s IS NOT NULL;\n", table, quoteIdent(r.Column), quoteIdent(r.Column))
		default:
			fmt.Fprintf(&b, "  IF col.typcategory <> 'S' THEN\n    RAISE EXCEPTION 'masking rule %s: %s needs a text column (text, varchar, char, citext); use null on other types';\n  END IF;\n", key, r.Strategy)
			// varchar(n) and char(n) keep their length: the masked
			// value is cut to fit (atttypmod is n + 4).
			fmt.Fprintf(&b, "  IF col.atttypmod > 4 THEN\n    UPDATE %s SET %s = left(%s, col.atttypmod - 4) WHERE %s IS NOT NULL;\n  ELSE\n    UPDATE %s SET %s = %s WHERE %s IS NOT NULL;\n  END IF;\n",
				table, quoteIdent(r.Column), expr, quoteIdent(r.Column),
				table, quoteIdent(r.Column), expr, quoteIdent(r.Column))
		}
	}
	b.WriteString("END\n$strata_mask$;")
	out := []string{b.String()}
	for _, t := range tables {
		out = append(out, "VACUUM (FULL, ANALYZE) "+t)
	}
	return out
}

// quoteIdent quotes an identifier already restricted to MaskColumnPattern's
// characters.
func quoteIdent(s string) string { return `"` + s + `"` }
