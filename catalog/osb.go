package catalog

import "github.com/pivotal-cf/brokerapi/v12/domain"

// OSBPlan is brokerapi's plan with the OSB 2.17 field brokerapi lacks.
type OSBPlan struct {
	domain.ServicePlan
	BindingRotatable bool `json:"binding_rotatable,omitempty"`
}

// OSBService is a catalog service as GET /v2/catalog returns it.
type OSBService struct {
	domain.Service
	Plans []OSBPlan `json:"plans"`
}

// OSB returns the catalog in brokerapi's types (what its handlers check
// service and plan ids against).
func (c *Catalog) OSB() []domain.Service {
	out := make([]domain.Service, 0, len(c.Services))
	for _, s := range c.CatalogResponse() {
		svc := s.Service
		for _, p := range s.Plans {
			svc.Plans = append(svc.Plans, p.ServicePlan)
		}
		out = append(out, svc)
	}
	return out
}

// CatalogResponse is the body of GET /v2/catalog.
func (c *Catalog) CatalogResponse() []OSBService {
	out := make([]OSBService, 0, len(c.Services))
	for i := range c.Services {
		s := &c.Services[i]
		meta := s.Metadata
		svc := OSBService{Service: domain.Service{
			ID: s.ID, Name: s.Name, Description: s.Description, Tags: s.Tags,
			Bindable: true, PlanUpdatable: true,
			InstancesRetrievable: true, BindingsRetrievable: true,
			Metadata: &meta,
		}}
		for j := range s.Plans {
			p := &s.Plans[j]
			schemas := SchemasFor(p)
			meta := p.Metadata
			polling := p.MaximumPollingDuration
			svc.Plans = append(svc.Plans, OSBPlan{
				ServicePlan: domain.ServicePlan{
					ID: p.ID, Name: p.Name, Description: p.Description,
					Free: domain.FreeValue(false), Bindable: domain.BindableValue(true),
					PlanUpdatable: domain.PlanUpdatableValue(len(p.UpdatableTo) > 0),
					Metadata:      &meta,
					Schemas: &domain.ServiceSchemas{
						Instance: domain.ServiceInstanceSchema{
							Create: domain.Schema{Parameters: schemas.Provision},
							Update: domain.Schema{Parameters: schemas.Update},
						},
						Binding: domain.ServiceBindingSchema{Create: domain.Schema{Parameters: schemas.Bind}},
					},
					MaximumPollingDuration: &polling,
					MaintenanceInfo: &domain.MaintenanceInfo{
						Version: c.MaintenanceVersion, Description: c.MaintenanceDescription,
					},
				},
				BindingRotatable: p.BindingRotatable,
			})
		}
		out = append(out, svc)
	}
	return out
}
