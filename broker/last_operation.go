package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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
// A deprovisioned instance answers 410 Gone, which the spec makes the
// success of an asynchronous delete: platforms (Crossplane's provider)
// then forget the instance rather than deleting it again.
func (b *Broker) InstanceOperation(ctx context.Context, id, operation string) (LastOperationResult, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if err == nil && rec.Deleted {
		return LastOperationResult{}, gone
	}
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
	if rec.Deleted {
		return LastOperationResult{}, gone
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

// advance moves an in-progress operation on: it applies the desired
// state when that changed (or the request that applied it died, or a
// resync is due), reads the operator's status, and records the outcome.
// The reconcile loop calls it for every operation in progress; a poll
// calls it too, so the answer reflects the status as of the poll. Every
// step is idempotent and the record is written with optimistic
// concurrency, so two replicas advancing one operation never disagree.
func (b *Broker) advance(ctx context.Context, rec *InstanceRecord) {
	inst, eng, err := b.instanceOf(rec)
	if err != nil {
		rec.Operation.State, rec.Operation.Description = provisioners.Failed, err.Error()
		_ = b.Store.UpdateInstance(ctx, rec)
		return
	}
	before := *rec
	var progress provisioners.Progress
	switch rec.Operation.Type {
	case OpDeprovision:
		done, err := b.deprovisionStep(ctx, rec, inst, eng)
		switch {
		case err != nil:
			progress = provisioners.Progress{State: provisioners.InProgress, Description: err.Error()}
		case done:
			progress = provisioners.Progress{State: provisioners.Succeeded, Description: "deprovisioned" + retainedNote(inst)}
			rec.Deleted = true
		default:
			progress = provisioners.Progress{State: provisioners.InProgress, Description: "waiting for the operators to remove the instance's resources" + retainedNote(inst)}
		}
	default:
		progress = b.converge(ctx, rec, inst, eng)
	}
	if progress.State == provisioners.InProgress && b.now().After(rec.Operation.Deadline) {
		progress = provisioners.Progress{State: provisioners.Failed, Description: fmt.Sprintf(
			"did not finish within %s (maximum polling duration of plan %s); last status: %s",
			rec.Operation.Deadline.Sub(rec.Operation.Started).Round(time.Second), inst.Plan.Name, progress.Description)}
	}
	if !rec.Operation.claimed(b.now()) {
		rec.Operation.ClaimedBy, rec.Operation.ClaimedUntil = "", time.Time{}
	}
	rec.Operation.State, rec.Operation.Description = progress.State, progress.Description
	if reflect.DeepEqual(before, *rec) {
		return
	}
	if err := b.Store.UpdateInstance(ctx, rec); err != nil {
		// Another replica (or the reconcile loop) wrote the record since it
		// was read. The answer is what is stored, never an outcome that was
		// not recorded: a platform told "succeeded" binds next, and the
		// bind reads the record. The next poll advances it again.
		b.logger(ctx).Debug("record progress", zap.String("instance", rec.ID), zap.Error(err))
		if stored, gerr := b.Store.GetInstance(ctx, rec.ID); gerr == nil {
			*rec = *stored
		} else {
			*rec = before
		}
		return
	}
	if rec.Deleted {
		// Only once the record says so, so the tenant's other instances
		// are counted against an up-to-date list.
		if err := b.releaseBaseline(ctx, rec.Namespace); err != nil {
			b.logger(ctx).Warn("remove the tenant baseline", zap.String("namespace", rec.Namespace), zap.Error(err))
		}
	}
}

// converge drives a provision or update: the credential source's setup if
// it has not run, the desired state if it must be applied, then the
// operator's status; once that says ready, the credential source joins.
func (b *Broker) converge(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine) provisioners.Progress {
	want, err := b.desiredOf(inst, eng)
	if err != nil {
		return provisioners.Progress{State: provisioners.Failed, Description: err.Error()}
	}
	apply := b.needsApply(rec, want)
	if rec.Operation.Type == OpProvision && (!rec.Prepared || apply) {
		// A provision's request prepares the credentials before applying
		// anything; this completes one that was cut short (Prepare is
		// idempotent) and records that it ran.
		if err := eng.Binder.Prepare(ctx, inst); err != nil {
			return provisioners.Progress{State: provisioners.InProgress, Description: "preparing credentials: " + err.Error()}
		}
		rec.Prepared = true
	}
	if apply {
		if recordObjects(rec, objectRefs(want.objects)) {
			// Named in the record before they exist.
			if err := b.Store.UpdateInstance(ctx, rec); err != nil {
				return provisioners.Progress{State: rec.Operation.State, Description: rec.Operation.Description}
			}
		}
		if err := b.applyDesired(ctx, want); err != nil {
			return provisioners.Progress{State: provisioners.InProgress, Description: "applying: " + err.Error()}
		}
		rec.AppliedHash, rec.AppliedAt = want.hash, b.now()
	}
	observed, err := b.Kube.Observe(ctx, eng.Provisioner.Watched(inst))
	if err != nil {
		return provisioners.Progress{State: provisioners.InProgress, Description: "reading status: " + err.Error()}
	}
	progress := eng.Provisioner.Assess(inst, observed, b.now())
	if progress.State == provisioners.Succeeded {
		// The credential source joins once the database is up.
		if err := eng.Binder.Configure(ctx, inst); err != nil {
			progress = provisioners.Progress{State: provisioners.InProgress,
				Description: progress.Description + "; setting up credentials: " + err.Error()}
		} else {
			// Then a seed from S3, which needs the instance and its
			// credentials (seed_s3.go).
			progress = b.seedFromS3(ctx, rec, inst, eng, progress)
		}
	}
	return progress
}

func retainedNote(inst provisioners.Instance) string {
	if pg := inst.Plan.Postgres; pg != nil && pg.Backup != nil {
		return "; backups are kept for their retention period so the instance can be restored"
	}
	return ""
}
