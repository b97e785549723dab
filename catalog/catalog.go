// Package catalog holds Strata's services and plans: their stable ids, the
// sizing each plan stands for, the JSON Schemas of their parameters, the
// metadata marketplaces display and which plan changes are safe.
//
// Plans are plain Go values so that the provisioners read the same numbers
// the catalog advertises; the schemas are generated from those numbers for
// the same reason.
package catalog

import (
	"fmt"
	"slices"

	"github.com/pivotal-cf/brokerapi/v12/domain"
)

// Engine names the provisioner that serves a service.
type Engine string

const (
	EnginePostgres Engine = "postgresql"
	EngineRedis    Engine = "redis"
	EngineKafka    Engine = "kafka"
)

// Service is one offering of the catalog.
type Service struct {
	ID          string
	Name        string
	Engine      Engine
	Description string
	Tags        []string
	Metadata    domain.ServiceMetadata
	Plans       []Plan
}

// Plan is a size and shape of a service, with everything the provisioner
// needs to know about it.
type Plan struct {
	ID          string
	Name        string
	Description string
	Metadata    domain.ServicePlanMetadata
	// UpdatableTo names the plans an instance of this plan may move to.
	// Moves that would lose data, redundancy or backups are absent.
	UpdatableTo []string
	// MaximumPollingDuration bounds every asynchronous operation (seconds).
	MaximumPollingDuration int
	// BindingRotatable says whether bindings can be rotated with
	// predecessor_binding_id (OSB 2.17).
	BindingRotatable bool

	// Exactly one of these says what the plan stands for.
	Postgres *PostgresPlan
	Redis    *RedisPlan
	Kafka    *KafkaPlan
}

// Catalog is the whole set of services the broker offers.
type Catalog struct {
	Services []Service
	// MaintenanceVersion is the semantic version of what a new or updated
	// instance gets (operand images and rendered defaults). Bumping it lets
	// platforms offer an upgrade through maintenance_info.
	MaintenanceVersion     string
	MaintenanceDescription string
}

// Find returns the service and plan with the given ids.
func (c *Catalog) Find(serviceID, planID string) (*Service, *Plan, error) {
	for i := range c.Services {
		s := &c.Services[i]
		if s.ID != serviceID {
			continue
		}
		for j := range s.Plans {
			if s.Plans[j].ID == planID {
				return s, &s.Plans[j], nil
			}
		}
		return s, nil, fmt.Errorf("plan_id %q is not a plan of service %q; GET /v2/catalog lists them", planID, s.Name)
	}
	return nil, nil, fmt.Errorf("service_id %q is not in the catalog; GET /v2/catalog lists the services", serviceID)
}

// PlanByName returns the plan of service s called name.
func (s *Service) PlanByName(name string) *Plan {
	for i := range s.Plans {
		if s.Plans[i].Name == name {
			return &s.Plans[i]
		}
	}
	return nil
}

// CanUpdate says whether an instance may move from plan "from" to plan "to",
// and if not, why.
func (s *Service) CanUpdate(from, to *Plan) error {
	if from.ID == to.ID || slices.Contains(from.UpdatableTo, to.Name) {
		return nil
	}
	reason := "it is not a supported plan change"
	switch {
	case from.Postgres != nil && to.Postgres != nil:
		reason = from.Postgres.downgradeReason(to.Postgres)
	case from.Kafka != nil && to.Kafka != nil:
		reason = from.Kafka.ChangeReason(to.Kafka)
	}
	allowed := "none"
	if len(from.UpdatableTo) > 0 {
		allowed = fmt.Sprint(from.UpdatableTo)
	}
	return fmt.Errorf("plan %q cannot change to %q: %s; allowed targets from %q: %s. Provision a new instance and migrate the data instead",
		from.Name, to.Name, reason, from.Name, allowed)
}

// Default returns Strata's catalog with the platform's settings applied.
func Default() *Catalog {
	return &Catalog{
		MaintenanceVersion:     "1.0.0",
		MaintenanceDescription: "CloudNativePG 1.30, RedisFailover and Strimzi 1.2 operands with Strata 1.0 defaults",
		Services:               []Service{postgresService(), redisService(), kafkaService()},
	}
}
