package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pivotal-cf/brokerapi/v12/domain"
	"github.com/strata-dev/strata/provisioners"
	"go.uber.org/zap"
)

// LastOperationResult is a last_operation answer with the 2.17 fields
// brokerapi lacks.
type LastOperationResult struct {
	State            provisioners.State `json:"state"`
	Description      string             `json:"description,omitempty"`
	InstanceUsable   *bool              `json:"instance_usable,omitempty"`
	UpdateRepeatable *bool              `json:"update_repeatable,omitempty"`
}

// LastOperation implements brokerapi's interface; the HTTP layer uses
// InstanceOperation for the 2.17 fields.
func (b *Broker) LastOperation(ctx context.Context, id string, d domain.PollDetails) (domain.LastOperation, error) {
	r, err := b.InstanceOperation(ctx, id, d.OperationData)
	return domain.LastOperation{State: domain.LastOperationState(r.State), Description: r.Description}, err
}

// InstanceOperation reports (and advances) the instance's last operation.
func (b *Broker) InstanceOperation(ctx context.Context, id, operation string) (LastOperationResult, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if errors.Is(err, ErrNotFound) {
		// Only a deprovision may find the instance gone, and then that is
		// its success (410); otherwise the instance never existed.
		if strings.HasPrefix(operation, string(OpDeprovision)) {
			return LastOperationResult{}, gone
		}
		return LastOperationResult{}, notFound("instance " + id + " does not exist")
	}
	if err != nil {
		return LastOperationResult{}, internal(err.Error())
	}
	if rec.Operation.State == provisioners.InProgress {
		b.advance(ctx, rec)
	}
	op := rec.Operation
	res := LastOperationResult{State: op.State, Description: op.Description}
	if op.State == provisioners.Failed && (op.Type == OpUpdate || op.Type == OpDeprovision) {
		// A failed update leaves the instance as it was (rolled back or not
		// yet applied); a failed deprovision leaves it partly deleted.
		usable := op.Type == OpUpdate
		res.InstanceUsable = &usable
		if op.Type == OpUpdate {
			repeatable := true
			res.UpdateRepeatable = &repeatable
		}
	}
	return res, nil
}

// advance re-applies (or re-deletes) an in-progress operation's objects,
// reads the operator's status and records the outcome.
func (b *Broker) advance(ctx context.Context, rec *InstanceRecord) {
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		rec.Operation.State, rec.Operation.Description = provisioners.Failed, err.Error()
		_ = b.Store.UpdateInstance(ctx, rec)
		return
	}
	var progress provisioners.Progress
	switch rec.Operation.Type {
	case OpDeprovision:
		done, err := b.deprovisionStep(ctx, inst, eng)
		switch {
		case err != nil:
			progress = provisioners.Progress{State: provisioners.InProgress, Description: err.Error()}
		case done:
			progress = provisioners.Progress{State: provisioners.Succeeded, Description: "deprovisioned" + retainedNote(inst)}
			rec.Deleted = true
		default:
			progress = provisioners.Progress{State: provisioners.InProgress, Description: "waiting for the operators to remove the instance's resources"}
		}
	default:
		if err := b.ensureBaseline(ctx, inst.Namespace, inst.Meshed); err != nil {
			progress = provisioners.Progress{State: provisioners.InProgress, Description: err.Error()}
			break
		}
		if rec.Operation.Type == OpProvision {
			// A provision cut short (a crash, a cancelled request) before
			// its credentials' setup is completed here; Prepare is
			// idempotent.
			if err := eng.Binder.Prepare(ctx, inst); err != nil {
				progress = provisioners.Progress{State: provisioners.InProgress, Description: "preparing credentials: " + err.Error()}
				break
			}
		}
		progress = b.assess(ctx, inst, eng)
		if progress.State == provisioners.Succeeded {
			// The credential source joins once the database is up.
			if err := eng.Binder.Configure(ctx, inst); err != nil {
				progress = provisioners.Progress{State: provisioners.InProgress,
					Description: progress.Description + "; setting up credentials: " + err.Error()}
			}
		}
	}
	if progress.State == provisioners.InProgress && b.now().After(rec.Operation.Deadline) {
		progress = provisioners.Progress{State: provisioners.Failed, Description: fmt.Sprintf(
			"did not finish within %s (maximum polling duration of plan %s); last status: %s",
			rec.Operation.Deadline.Sub(rec.Operation.Started).Round(time.Second), inst.Plan.Name, progress.Description)}
	}
	if progress.State == rec.Operation.State && progress.Description == rec.Operation.Description {
		return
	}
	rec.Operation.State, rec.Operation.Description = progress.State, progress.Description
	if err := b.Store.UpdateInstance(ctx, rec); err != nil {
		// Another replica advanced it; our reading is still a fair answer.
		b.Log.Debug("record progress", zap.String("instance", rec.ID), zap.Error(err))
		return
	}
	if rec.Deleted {
		// Only once the record says so, so the tenant's other instances
		// are counted against an up-to-date list.
		if err := b.releaseBaseline(ctx, rec.Namespace); err != nil {
			b.Log.Warn("remove the tenant baseline", zap.String("namespace", rec.Namespace), zap.Error(err))
		}
	}
}

func (b *Broker) assess(ctx context.Context, inst provisioners.Instance, eng Engine) provisioners.Progress {
	objs, err := eng.Provisioner.Build(inst)
	if err != nil {
		return provisioners.Progress{State: provisioners.Failed, Description: err.Error()}
	}
	if err := b.Kube.Apply(ctx, objs); err != nil {
		return provisioners.Progress{State: provisioners.InProgress, Description: "applying: " + err.Error()}
	}
	observed, err := b.Kube.Observe(ctx, eng.Provisioner.Watched(inst))
	if err != nil {
		return provisioners.Progress{State: provisioners.InProgress, Description: "reading status: " + err.Error()}
	}
	return eng.Provisioner.Assess(inst, observed, b.now())
}
