package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// The OSB spec requires "$schema" in every schema and forbids external $ref.
const schemaDialect = "http://json-schema.org/draft-04/schema#"

// Schema is a JSON Schema as a JSON value.
type Schema = map[string]any

// PlanSchemas are the three schemas a plan publishes.
type PlanSchemas struct {
	Provision Schema
	Update    Schema
	Bind      Schema
}

// SchemasFor returns the parameter schemas of a plan.
func SchemasFor(p *Plan) PlanSchemas {
	switch {
	case p.Postgres != nil && p.Postgres.Shared:
		return PlanSchemas{
			Provision: postgresSharedSchema(false),
			Update:    postgresSharedSchema(true),
			Bind:      postgresSharedBindSchema(),
		}
	case p.Postgres != nil:
		return PlanSchemas{
			Provision: postgresInstanceSchema(p.Postgres, false),
			Update:    postgresInstanceSchema(p.Postgres, true),
			Bind:      postgresBindSchema(),
		}
	case p.Redis != nil:
		return redisSchemas(p.Redis)
	case p.Kafka != nil:
		return kafkaSchemas(p.Kafka)
	}
	return PlanSchemas{}
}

func postgresInstanceSchema(pg *PostgresPlan, update bool) Schema {
	props := Schema{
		"version": Schema{
			"type": "string", "enum": PostgresVersions, "default": DefaultPostgresVersion,
			"description": "PostgreSQL major version. Fixed at provision time.",
		},
		"storage_gb": Schema{
			"type": "integer", "minimum": pg.MinStorageGB, "maximum": pg.MaxStorageGB, "default": pg.StorageGB,
			"description": "Volume size of each instance in GB (GiB). It can grow on update, never shrink.",
		},
		"replicas": Schema{
			"type": "integer", "minimum": pg.MinReplicas, "maximum": pg.MaxReplicas, "default": pg.Instances - 1,
			"description": "Standby instances beside the primary; they serve the read-only service and take over on failure.",
		},
		"resources": resourcesSchema(
			fmt.Sprintf("CPU and memory of each instance (requests = limits). At most %s CPU and %s memory on this plan.", pg.MaxCPU, pg.MaxMemory),
			pg.CPU, pg.Memory),
		"databases": Schema{
			"type": "array", "minItems": 1, "maxItems": 16, "uniqueItems": true, "default": []string{"app"},
			"description": "Databases to create; the first is the one bindings connect to by default. Databases can be added on update, not removed.",
			"items":       Schema{"type": "string", "pattern": `^[a-z][a-z0-9_]{0,62}$`},
		},
		"extensions": Schema{
			"type": "array", "uniqueItems": true, "maxItems": len(PostgresExtensions),
			"description": "Extensions created in every database (pgaudit and pg_stat_statements are always on).",
			"items":       Schema{"type": "string", "enum": PostgresExtensions},
		},
		"audit": Schema{
			"type": "object", "additionalProperties": false,
			"description": "What pgaudit logs. Auditing cannot be turned off.",
			"properties": Schema{
				"classes": Schema{
					"type": "array", "minItems": 1, "uniqueItems": true, "default": DefaultAuditClasses,
					"items": Schema{"type": "string", "enum": AuditClasses},
				},
			},
		},
		"xa": Schema{
			"type": "boolean", "default": false,
			"description": "Enable prepared transactions (max_prepared_transactions = max_connections) for XA/JTA distributed transactions. Changing it restarts the instances.",
		},
	}
	if pg.Backup != nil {
		props["backup"] = Schema{
			"type": "object", "additionalProperties": false,
			"description": "Backup schedule and point-in-time-recovery window.",
			"properties": Schema{
				"schedule": Schema{
					"type": "string", "default": pg.Backup.Schedule,
					"description": "Six-field cron expression, seconds first, UTC (e.g. \"0 0 3 * * *\" for 03:00 daily).",
				},
				"retention_days": Schema{
					"type": "integer", "minimum": 1, "maximum": pg.Backup.MaxRetentionDays, "default": pg.Backup.RetentionDays,
					"description": "Days of backups and WAL kept; any point in this window can be restored.",
				},
			},
		}
	}
	if pg.Drill != nil {
		props["drills"] = drillsSchema(pg.Drill)
	}
	props["restore"] = restoreSchema(pg)
	props["seed"] = seedSchema()
	props["copy_of"] = copyOfSchema(pg)
	return instanceSchema("PostgreSQL", props, update)
}

// drillsSchema is the per-instance part of the plan's restore drills
// (docs/disaster-recovery.md, Restore drills): opt out, or another
// interval within the platform's bounds.
func drillsSchema(d *DrillPlan) Schema {
	return Schema{
		"type": "object", "additionalProperties": false,
		"description": "Scheduled restore drills of this instance: its backups restored into a throwaway copy and checked. On by default, at the plan's interval.",
		"properties": Schema{
			"enabled": Schema{
				"type": "boolean", "default": true,
				"description": "false: this instance is not drilled (its drill results and alerts go too).",
			},
			"interval_hours": Schema{
				"type": "integer", "minimum": DrillIntervalHours(d.MinInterval), "maximum": DrillIntervalHours(d.MaxInterval),
				"default":     DrillIntervalHours(d.Interval),
				"description": fmt.Sprintf("Hours between two drills of this instance, %d to %d on this platform.", DrillIntervalHours(d.MinInterval), DrillIntervalHours(d.MaxInterval)),
			},
		},
	}
}

// k8sNamePattern is a ConfigMap's or Secret's name (a DNS subdomain).
const k8sNamePattern = `^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`

// seedSchema is the seed parameter: SQL from a ConfigMap or Secret of the
// tenant's namespace, run once when the instance is created.
func seedSchema() Schema {
	return Schema{
		"type": "object", "additionalProperties": false,
		"description": "Fill the instance once when it is created, with the rights of an owner binding: SQL from a ConfigMap or Secret " +
			"in the instance's namespace, or a pg_dump -Fc archive (or plain SQL) from S3 (exactly one of config_map, secret and s3). Only when provisioning.",
		"properties": Schema{
			"config_map": Schema{"type": "string", "pattern": k8sNamePattern, "description": "Name of the ConfigMap holding the SQL."},
			"secret":     Schema{"type": "string", "pattern": k8sNamePattern, "description": "Name of the Secret holding the SQL."},
			"s3":         seedS3Schema(),
			"key": Schema{
				"type": "string", "pattern": `^[-._a-zA-Z0-9]{1,253}$`, "default": "seed.sql",
				"description": "Key of the ConfigMap or Secret whose value is the SQL (plain statements; no psql meta-commands, no COPY FROM STDIN).",
			},
		},
	}
}

// S3BucketPattern is an S3 bucket name (3 to 63 lower-case letters,
// digits, dots and hyphens, starting and ending with a letter or digit).
const S3BucketPattern = `^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`

// S3KeyPattern is an object key (at most 1024 characters: maxLength): no
// control characters (they would reach the Job's argv and the
// descriptions), not starting with a slash.
const S3KeyPattern = `^[^/\x00-\x1f\x7f][^\x00-\x1f\x7f]*$`

// seedS3Schema is seed.s3: a dump in S3, restored into the instance once
// it is ready, by a Job of its namespace (docs/postgres.md, Seeding).
func seedS3Schema() Schema {
	return Schema{
		"type": "object", "additionalProperties": false, "required": []any{"bucket", "key"},
		"description": "Restore a dump from S3 once the instance is ready: a pg_dump -Fc archive (pg_restore) or plain SQL (psql), " +
			"fetched over TLS with the keys of credentials_secret or the IAM role of service_account (exactly one).",
		"properties": Schema{
			"bucket":   Schema{"type": "string", "pattern": S3BucketPattern, "description": "The bucket."},
			"key":      Schema{"type": "string", "pattern": S3KeyPattern, "maxLength": 1024, "description": "The object's key, e.g. prod/2026-12-01.pgdump."},
			"endpoint": Schema{"type": "string", "pattern": `^https://[^\s/]+(/.*)?$`, "maxLength": 2048, "description": "An S3-compatible store's https:// endpoint; empty: AWS S3."},
			"region":   Schema{"type": "string", "pattern": `^[a-z0-9-]{1,32}$`, "description": "The bucket's region; default us-east-1."},
			"credentials_secret": Schema{"type": "string", "pattern": k8sNamePattern,
				"description": "A Secret of the instance's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (s3:GetObject on the object)."},
			"service_account": Schema{"type": "string", "pattern": k8sNamePattern,
				"description": "Instead of keys: a ServiceAccount of the instance's namespace whose IAM role may read the object (IRSA or EKS Pod Identity)."},
		},
	}
}

// MaskStrategies are the masking strategies of copy_of.mask (the
// provisioner's, provisioners/postgres/mask.go, which generates the SQL).
var MaskStrategies = []string{"hash", "email", "redact", "null"}

// MaskColumnPattern is a masking rule's key: schema.table.column.
const MaskColumnPattern = `^[a-z_][a-z0-9_$]{0,62}\.[a-z_][a-z0-9_$]{0,62}\.[a-z_][a-z0-9_$]{0,62}$`

// copyOfSchema is the masked-copy parameter. Like restore, it is declared
// on every dedicated plan, and refused by the broker where it cannot be
// honoured, saying where it can.
func copyOfSchema(pg *PostgresPlan) Schema {
	description := "Provision this instance as a logical copy (pg_dump/pg_restore) of one database of another instance of the same namespace, " +
		"with the masking rules applied before anyone can connect. Only when provisioning."
	if pg.Backup != nil {
		description += " Not on this plan, whose WAL archive would keep the unmasked rows: copy into dev-lite."
	}
	return Schema{
		"type": "object", "additionalProperties": false, "required": []string{"instance", "mask"},
		"description": description,
		"properties": Schema{
			"instance": Schema{
				"type": "string", "minLength": 1, "maxLength": 255,
				"description": "Instance id of the source: a live PostgreSQL instance of the same namespace.",
			},
			"database": Schema{
				"type": "string", "pattern": `^[a-z][a-z0-9_]{0,62}$`,
				"description": "The source's database to copy (default: its first); it becomes this instance's first database.",
			},
			"mask": Schema{
				"type": "object", "additionalProperties": false,
				"description": "Masking rules: schema.table.column (lowercase) to a strategy. hash: 'h' and 16 hex digits of the value's SHA-256; " +
					"email: a hash-derived address at example.invalid; redact: 'redacted'; null: NULL. Deterministic: a value masks the same everywhere. " +
					"Key columns (primary or foreign keys) are refused. {} copies without masking.",
				"patternProperties": Schema{
					MaskColumnPattern: Schema{"type": "string", "enum": MaskStrategies},
				},
			},
		},
	}
}

// RestoreTimePattern is an RFC 3339 time or "latest" (the exact time is
// checked by parsing it, and against the source's restorable window, by
// the broker).
const RestoreTimePattern = `^(latest|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))$`

// restoreSchema is the point-in-time restore parameter. It is declared on
// plans without backups too, where the broker refuses it saying which
// plans take it, rather than calling it an unknown parameter.
func restoreSchema(pg *PostgresPlan) Schema {
	description := "Provision this instance from another PostgreSQL instance's backups, recovered to a point in time. " +
		"Only when provisioning; the new instance then keeps its own backups."
	if pg.Backup == nil {
		description += " Not on this plan, which keeps no backups: restore into standard or ha."
	}
	return Schema{
		"type": "object", "additionalProperties": false, "required": []string{"from_instance", "to_time"},
		"description": description,
		"properties": Schema{
			"from_instance": Schema{
				"type": "string", "minLength": 1, "maxLength": 255,
				"description": "Instance id of the source, in the same namespace: a live instance, or a deprovisioned one whose backups are still within their retention.",
			},
			"to_time": Schema{
				"type": "string", "pattern": RestoreTimePattern,
				"description": "RFC 3339 time to recover to (e.g. 2026-12-06T09:15:00Z), inside the source's restorable window " +
					"(GET the source instance: metadata.attributes.restorable_window), or \"latest\" for the last archived transaction.",
			},
		},
	}
}

// postgresSharedSchema is the shared plan's only parameter: the platform
// sizes, replicates and backs up the shared cluster, and the database's
// name is derived from the tenant and the instance.
func postgresSharedSchema(update bool) Schema {
	return instanceSchema("PostgreSQL", Schema{
		"extensions": Schema{
			"type": "array", "uniqueItems": true, "maxItems": len(PostgresExtensions),
			"description": "Extensions created in the database (pgaudit and pg_stat_statements are always on).",
			"items":       Schema{"type": "string", "enum": PostgresExtensions},
		},
	}, update)
}

// resourcesSchema is the "resources" parameter: CPU and memory quantities
// defaulting to the plan's.
func resourcesSchema(description, cpu, memory string) Schema {
	return Schema{
		"type": "object", "additionalProperties": false,
		"description": description,
		"properties": Schema{
			"cpu":    Schema{"type": "string", "pattern": `^([1-9][0-9]*m|[0-9]+(\.[0-9]+)?)$`, "default": cpu, "description": "Kubernetes CPU quantity, e.g. 500m or 2."},
			"memory": Schema{"type": "string", "pattern": `^[1-9][0-9]*(Mi|Gi)$`, "default": memory, "description": "Kubernetes memory quantity in Mi or Gi, e.g. 2Gi."},
		},
	}
}

// instanceSchema is a plan's provision schema ("<engine> instance
// parameters") or, with update, its update schema ("<engine> update
// parameters"), which has no defaults: a form that pre-fills defaults would
// send the plan's defaults (version, storage) for an instance that differs,
// and the update would be refused: an update says only what changes.
func instanceSchema(engine string, props Schema, update bool) Schema {
	props[DashboardURLGeneration] = Schema{
		"type": "integer", "minimum": 0,
		"description": "Change it (to any other number) to replace the instance page's link: the update answers with the new dashboard_url and the old one stops working. Has no effect when the broker serves no instance page.",
	}
	title := engine + " instance parameters"
	if update {
		title = engine + " update parameters"
		withoutDefaults(props)
	}
	return objectSchema(title, props)
}

// DashboardURLGeneration is the parameter of every instance plan whose
// change rotates the instance page's capability token (docs/instance-page.md):
// a number rather than a one-shot flag because declarative platforms
// re-send the whole parameter set, and re-sending must not rotate again.
const DashboardURLGeneration = "dashboard_url_generation"

// objectSchema is a top-level parameters schema: an object with exactly
// these properties.
func objectSchema(title string, props Schema) Schema {
	return Schema{
		"$schema":              schemaDialect,
		"title":                title,
		"type":                 "object",
		"additionalProperties": false,
		"properties":           props,
	}
}

// planDisplayName is the display name of the plans every service offers.
func planDisplayName(plan string) string {
	return map[string]string{"dev-lite": "Dev lite", "standard": "Standard", "ha": "High availability", "shared": "Shared"}[plan]
}

// serviceMetadata is a service's OSB metadata; Strata provides them all.
func serviceMetadata(displayName, longDescription, documentationURL string) domain.ServiceMetadata {
	return domain.ServiceMetadata{
		DisplayName:         displayName,
		LongDescription:     longDescription,
		DocumentationUrl:    documentationURL,
		ProviderDisplayName: "Strata",
	}
}

// withoutDefaults removes "default" from every property, recursively.
func withoutDefaults(props Schema) {
	for _, v := range props {
		p, ok := v.(Schema)
		if !ok {
			continue
		}
		delete(p, "default")
		if nested, ok := p["properties"].(Schema); ok {
			withoutDefaults(nested)
		}
	}
}

func postgresBindSchema() Schema {
	return objectSchema("PostgreSQL binding parameters", Schema{
		"access": Schema{
			"type": "string", "enum": []string{"readwrite", "readonly", "owner"}, "default": "readwrite",
			"description": "readwrite: read and write data, no DDL. readonly: read data. owner: DDL too (for migrations).",
		},
		"database": Schema{
			"type": "string", "pattern": `^[a-z][a-z0-9_]{0,62}$`,
			"description": "Database to connect to; defaults to the instance's first database.",
		},
		"mount_path": Schema{
			"type": "string", "pattern": `^/[A-Za-z0-9._/-]{0,200}$`,
			"description": "Where the workload mounts the binding Secret (paths inside the Secret, such as the CA file, point there); defaults to /bindings/<secret name>.",
		},
	})
}

// postgresSharedBindSchema is the bind schema without "database": a
// shared instance is one database.
func postgresSharedBindSchema() Schema {
	s := postgresBindSchema()
	delete(s["properties"].(Schema), "database")
	return s
}

// Validator checks parameters against a plan's schemas. Compiled schemas are
// cached: compiling is far slower than validating.
type Validator struct {
	mu       sync.Mutex
	compiled map[string]*jsonschema.Schema
	docs     map[string]Schema
}

// NewValidator returns an empty validator.
func NewValidator() *Validator {
	return &Validator{compiled: map[string]*jsonschema.Schema{}, docs: map[string]Schema{}}
}

// Kind picks one of a plan's schemas.
type Kind string

const (
	KindProvision Kind = "provision"
	KindUpdate    Kind = "update"
	KindBind      Kind = "bind"
)

// Validate checks params (already decoded JSON) against the plan's schema of
// the given kind. The error names every offending parameter and says what is
// allowed, so a user can fix the request without reading the catalog.
func (v *Validator) Validate(p *Plan, k Kind, params map[string]any) error {
	sch, doc, err := v.schema(p, k)
	if err != nil {
		return err
	}
	if params == nil {
		params = map[string]any{}
	}
	// Round-trip through JSON so numbers are json.Number, as the library
	// expects, whatever decoded the parameters.
	raw, _ := json.Marshal(params)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return errors.New(describe(ve, doc))
		}
		return err
	}
	return nil
}

func (v *Validator) schema(p *Plan, k Kind) (*jsonschema.Schema, Schema, error) {
	key := p.ID + "/" + string(k)
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.compiled[key]; ok {
		return s, v.docs[key], nil
	}
	s := SchemasFor(p)
	doc := map[Kind]Schema{KindProvision: s.Provision, KindUpdate: s.Update, KindBind: s.Bind}[k]
	if doc == nil {
		return nil, nil, fmt.Errorf("plan %q has no %s schema", p.Name, k)
	}
	raw, _ := json.Marshal(doc)
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, err
	}
	c := jsonschema.NewCompiler()
	url := "strata:///" + key + ".json"
	if err := c.AddResource(url, parsed); err != nil {
		return nil, nil, err
	}
	compiled, err := c.Compile(url)
	if err != nil {
		return nil, nil, fmt.Errorf("catalog schema %s: %w", key, err)
	}
	v.compiled[key] = compiled
	v.docs[key] = doc
	return compiled, doc, nil
}

// describe flattens a validation error tree into one line per failing
// parameter ("parameters.replicas: maximum: got 9, want 4"). An unknown
// parameter is named with the parameters the plan accepts at that level.
func describe(ve *jsonschema.ValidationError, doc Schema) string {
	var lines []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		path := strings.Join(append([]string{"parameters"}, e.InstanceLocation...), ".")
		if ap, ok := e.ErrorKind.(*kind.AdditionalProperties); ok {
			for _, name := range ap.Properties {
				lines = append(lines, fmt.Sprintf("%s.%s: unknown parameter; accepted here: %s",
					path, name, strings.Join(propertyNames(doc, e.InstanceLocation), ", ")))
			}
			return
		}
		lines = append(lines, path+": "+describeKind(e.ErrorKind))
	}
	walk(ve)
	sort.Strings(lines)
	return "invalid parameters: " + strings.Join(lines, "; ")
}

var printer = message.NewPrinter(language.English)

// describeKind says what is wrong without repeating a string the request
// sent: the library's pattern and format messages quote the value, and a
// parameter value may be a secret (descriptions reach logs and users).
func describeKind(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Pattern:
		return fmt.Sprintf("does not match the pattern %s", k.Want)
	case *kind.Format:
		return fmt.Sprintf("is not a valid %s", k.Want)
	}
	return k.LocalizedString(printer)
}

// propertyNames lists the properties the schema allows at an instance
// location (array indices step into "items").
func propertyNames(doc Schema, loc []string) []string {
	cur := doc
	for _, seg := range loc {
		if props, ok := cur["properties"].(Schema); ok {
			if next, ok := props[seg].(Schema); ok {
				cur = next
				continue
			}
		}
		if items, ok := cur["items"].(Schema); ok {
			cur = items
			continue
		}
		return nil
	}
	props, _ := cur["properties"].(Schema)
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
