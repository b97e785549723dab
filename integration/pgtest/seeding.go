package pgtest

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
)

// The fixture of the seeding and masked-copy tests, shared by the test
// on this harness and the one on the real platform
// (internal/platform), so both prove the same thing.

// OrdersSeed is the seed SQL: 50 customers with personal data and 200
// orders referring to them.
//
//go:embed testdata/orders-seed.sql
var OrdersSeed string

// OrdersMask are the masking rules of the copy (copy_of.mask).
var OrdersMask = map[string]string{
	"public.customers.name":  "hash",
	"public.customers.email": "email",
	"public.customers.phone": "null",
	"public.orders.note":     "redact",
}

// OrdersRows are the row counts the seed makes.
const (
	OrdersCustomers = 50
	OrdersOrders    = 200
)

type customer struct {
	ID                   int64
	Name, Email, Country string
	Phone                *string
}

type order struct {
	ID, CustomerID int64
	Note           *string
	Total          string
}

func readOrders(ctx context.Context, conn *pgx.Conn) ([]customer, []order, error) {
	rows, _ := conn.Query(ctx, "SELECT id, name, email, phone, country FROM public.customers ORDER BY id")
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (customer, error) {
		var c customer
		return c, r.Scan(&c.ID, &c.Name, &c.Email, &c.Phone, &c.Country)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading customers: %w", err)
	}
	rows, _ = conn.Query(ctx, "SELECT id, customer_id, note, total::text FROM public.orders ORDER BY id")
	os, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (order, error) {
		var o order
		return o, r.Scan(&o.ID, &o.CustomerID, &o.Note, &o.Total)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading orders: %w", err)
	}
	return cs, os, nil
}

// CheckSeeded returns what is wrong with a seeded database: the seed's
// row counts.
func CheckSeeded(ctx context.Context, conn *pgx.Conn) []string {
	cs, os, err := readOrders(ctx, conn)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if len(cs) != OrdersCustomers || len(os) != OrdersOrders {
		problems = append(problems, fmt.Sprintf("seeded %d customers and %d orders, want %d and %d", len(cs), len(os), OrdersCustomers, OrdersOrders))
	}
	return problems
}

var (
	hashed = regexp.MustCompile(`^h[0-9a-f]{16}$`)
	email  = regexp.MustCompile(`^u[0-9a-f]{16}@example\.invalid$`)
)

// digest is the masking functions' 16 hex digits of SHA-256.
func digest(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])[:16]
}

// CheckMaskedCopy compares a masked copy with its source (both seeded
// with OrdersSeed, masked with OrdersMask) and returns every problem: no
// original value of a masked column may remain, each masked value must be
// the deterministic function of the original, the unmasked columns must
// be equal, and the foreign key joins must match as many rows.
func CheckMaskedCopy(ctx context.Context, source, masked *pgx.Conn) []string {
	srcC, srcO, err := readOrders(ctx, source)
	if err != nil {
		return []string{"source: " + err.Error()}
	}
	cpC, cpO, err := readOrders(ctx, masked)
	if err != nil {
		return []string{"copy: " + err.Error()}
	}
	if len(srcC) != len(cpC) || len(srcO) != len(cpO) || len(srcC) == 0 {
		return []string{fmt.Sprintf("the copy has %d customers and %d orders, the source %d and %d", len(cpC), len(cpO), len(srcC), len(srcO))}
	}
	var problems []string
	bad := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	originals := map[string]bool{}
	for _, c := range srcC {
		originals[c.Name], originals[c.Email] = true, true
		if c.Phone != nil {
			originals[*c.Phone] = true
		}
	}
	for _, o := range srcO {
		if o.Note != nil {
			originals[*o.Note] = true
		}
	}
	for i, c := range cpC {
		s := srcC[i]
		if c.ID != s.ID || c.Country != s.Country {
			bad("customer %d: unmasked columns differ: id %d country %q, source %d %q", i, c.ID, c.Country, s.ID, s.Country)
		}
		for _, v := range []string{c.Name, c.Email} {
			if originals[v] {
				bad("customer %d: an original value remains: %q", c.ID, v)
			}
		}
		if !hashed.MatchString(c.Name) || c.Name != "h"+digest(s.Name) {
			bad("customer %d: name %q is not hash(%q)", c.ID, c.Name, s.Name)
		}
		if !email.MatchString(c.Email) || c.Email != "u"+digest(s.Email)+"@example.invalid" {
			bad("customer %d: email %q is not the masked address of the original", c.ID, c.Email)
		}
		if c.Phone != nil {
			bad("customer %d: phone %q was not set to NULL", c.ID, *c.Phone)
		}
	}
	for i, o := range cpO {
		s := srcO[i]
		if o.ID != s.ID || o.CustomerID != s.CustomerID || o.Total != s.Total {
			bad("order %d: unmasked columns differ: %+v, source %+v", i, o, s)
		}
		if o.Note == nil || *o.Note != "redacted" {
			bad("order %d: note %v is not redacted", o.ID, o.Note)
		}
	}
	// Referential integrity: the joins match as many rows, per country.
	const join = "SELECT c.country, count(*) FROM public.orders o JOIN public.customers c ON c.id = o.customer_id GROUP BY c.country ORDER BY c.country"
	counts := func(conn *pgx.Conn) (map[string]int64, error) {
		rows, _ := conn.Query(ctx, join)
		out := map[string]int64{}
		var country string
		var n int64
		_, err := pgx.ForEachRow(rows, []any{&country, &n}, func() error { out[country] = n; return nil })
		return out, err
	}
	a, errA := counts(source)
	b, errB := counts(masked)
	if errA != nil || errB != nil {
		bad("joining orders to customers: %v %v", errA, errB)
	} else if fmt.Sprint(a) != fmt.Sprint(b) {
		bad("orders joined to customers per country: copy %v, source %v", b, a)
	}
	var orphans int64
	if err := masked.QueryRow(ctx, "SELECT count(*) FROM public.orders o LEFT JOIN public.customers c ON c.id = o.customer_id WHERE c.id IS NULL").Scan(&orphans); err != nil || orphans != 0 {
		bad("orders without their customer in the copy: %d (%v)", orphans, err)
	}
	return problems
}
