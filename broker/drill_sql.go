package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-dev/strata/provisioners/postgres"
)

// PgxDrillDB is DrillDB over pgx: TLS verified against the instance's CA
// and host name, SCRAM as the drill login.
type PgxDrillDB struct{}

var _ DrillDB = PgxDrillDB{}

// The marker table: one row per drill, kept 60 days (far less than a
// page of rows at a daily interval). The schema is CloudNativePG's to
// create (postgres.DrillSchemaDatabase), owned by the drill login, which
// has no CREATE on the database: even CREATE SCHEMA IF NOT EXISTS would
// be refused (PostgreSQL checks the privilege before the existence).
var markerSQL = []string{
	"COMMENT ON SCHEMA " + postgres.DrillSchema + " IS 'Strata: markers the broker''s restore drills write and look for in the restored copy'",
	"CREATE TABLE IF NOT EXISTS " + postgres.DrillSchema + ".markers (token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp())",
	"DELETE FROM " + postgres.DrillSchema + ".markers WHERE written_at < now() - interval '60 days'",
}

func (PgxDrillDB) connect(ctx context.Context, c DrillConn) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		return nil, errors.New("the instance's CA certificate cannot be read")
	}
	cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password = c.Host, 5432, c.Database, c.User, c.Password
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = 10 * time.Second
	cfg.RuntimeParams = map[string]string{"application_name": "strata-drill"}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		// pgx's error can carry the connection string; name only where.
		return nil, fmt.Errorf("connecting to %s as %s: %w", net.JoinHostPort(c.Host, strconv.Itoa(5432)), c.User, redactConnErr(err))
	}
	return conn, nil
}

// redactConnErr keeps pgx's reason and drops nothing secret: pgx never
// puts the password in its errors, but a wrapped config might, so only
// the innermost error's text is kept.
func redactConnErr(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// WriteMarker creates the marker table if need be and inserts token.
func (db PgxDrillDB) WriteMarker(ctx context.Context, c DrillConn, token string) (time.Time, error) {
	conn, err := db.connect(ctx, c)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range markerSQL {
		if _, err := conn.Exec(ctx, q); err != nil {
			return time.Time{}, fmt.Errorf("%s: %w", q, err)
		}
	}
	var at time.Time
	// Committed when Exec returns (autocommit): clock_timestamp() is just
	// before the commit, so the commit is at or after it.
	if err := conn.QueryRow(ctx, "INSERT INTO "+postgres.DrillSchema+".markers (token) VALUES ($1) RETURNING written_at", token).Scan(&at); err != nil {
		return time.Time{}, err
	}
	return at, nil
}

// Markers reads the marker table (empty when it does not exist yet).
func (db PgxDrillDB) Markers(ctx context.Context, c DrillConn) (map[string]time.Time, error) {
	conn, err := db.connect(ctx, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", postgres.DrillSchema+".markers").Scan(&exists); err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	if !exists {
		return out, nil
	}
	rows, err := conn.Query(ctx, "SELECT token, written_at FROM "+postgres.DrillSchema+".markers")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			tok string
			at  time.Time
		)
		if err := rows.Scan(&tok, &at); err != nil {
			return nil, err
		}
		out[tok] = at
	}
	return out, rows.Err()
}
