package broker

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-dev/strata/binding"
	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/postgres"
)

// A seed from S3 (parameters.seed.s3, docs/postgres.md "Seeding") is the
// last step of a provision: once the instance is ready and its credential
// source has joined, the broker issues a login with the rights of an owner
// binding through the engine's Binder (the path a bind takes, so
// DatabaseRole logins and OpenBao leases both work), creates the Job
// postgres.S3SeedJob renders, and keeps the provision in progress
// ("seeding from s3://b/k") until the Job is complete; then it revokes the
// login and deletes the Job. A failed Job fails the provision with its
// pod's termination message (the parameter to fix, no rows, no secrets)
// and is kept for its log. Each step is idempotent and recorded
// (InstanceRecord.SeedS3), so the reconcile loop resumes it after a crash
// or a restart, whether or not the platform polls.

// SeedS3State is the progress of a seed from S3 in the instance record.
type SeedS3State struct {
	// Operation is the provision operation the seed belongs to: a retried
	// provision starts the seed again.
	Operation string `json:"operation"`
	// SecretName and Handles name the login (never its password).
	SecretName string            `json:"secretName,omitempty"`
	Handles    map[string]string `json:"handles,omitempty"`
	Usernames  map[string]string `json:"usernames,omitempty"`
	// Done: the Job completed; what is left is removing it and the login.
	Done bool `json:"done,omitempty"`
}

// s3Seeder is an engine that seeds from S3 (postgres.Provisioner).
type s3Seeder interface {
	S3SeedOf(inst provisioners.Instance) (*postgres.S3Seed, error)
	S3SeedJob(inst provisioners.Instance, j postgres.S3SeedJob) (*unstructured.Unstructured, error)
}

// seedLoginID is the binding id the seed's login is issued under: derived
// from the instance, so a login an interrupted step issued is found again
// (Binder.Forget) without a record of it.
func seedLoginID(inst provisioners.Instance) string { return "strata-seed-s3-" + inst.ID }

var podGVK = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}

func (st *SeedS3State) result() binding.Result {
	logins := map[string]binding.Login{}
	for k, h := range st.Handles {
		logins[k] = binding.Login{Handle: h, Username: st.Usernames[k]}
	}
	return binding.Result{SecretName: st.SecretName, Logins: logins}
}

// seedFromS3 runs after the instance is ready (ready is its progress):
// it returns ready itself when there is no seed from S3 or it is done.
func (b *Broker) seedFromS3(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine, ready provisioners.Progress) provisioners.Progress {
	seeder, ok := eng.Provisioner.(s3Seeder)
	if !ok || rec.Operation.Type != OpProvision {
		return ready
	}
	src, err := seeder.S3SeedOf(inst)
	if err != nil || src == nil {
		return ready
	}
	desc := postgres.S3SeedDescription(*src)
	inProgress := func(format string, a ...any) provisioners.Progress {
		return provisioners.Progressing(desc + ": " + fmt.Sprintf(format, a...))
	}
	jobRef := postgres.S3SeedJobRef(inst)
	if st := rec.SeedS3; st != nil && st.Operation != rec.Operation.ID {
		// An earlier, failed provision's seed: its Job and login go before
		// this one starts.
		if err := b.removeS3Seed(ctx, rec, inst, eng); err != nil {
			return inProgress("removing the earlier attempt's Job and login: %v", err)
		}
		if job, err := b.Kube.Get(ctx, jobRef); err != nil || job != nil {
			return inProgress("waiting for the earlier attempt's Job %s to go%s", jobRef.Name, errSuffix(err))
		}
		rec.SeedS3 = nil
	}
	if rec.SeedS3 == nil {
		// Whatever an interrupted pass issued under the id is revoked
		// first, then the login is issued and recorded before any Job
		// uses it.
		id := seedLoginID(inst)
		if err := errors.Join(eng.Binder.RevokeUnrecorded(ctx, inst, id), eng.Binder.Forget(ctx, inst, id)); err != nil {
			return inProgress("revoking an interrupted attempt's login: %v", err)
		}
		res, err := eng.Binder.Bind(ctx, inst, id, map[string]any{"access": string(binding.Owner)})
		if err != nil {
			return inProgress("issuing the seed's owner login: %v", err)
		}
		st := &SeedS3State{Operation: rec.Operation.ID, SecretName: res.SecretName, Handles: map[string]string{}, Usernames: map[string]string{}}
		for k, l := range res.Logins {
			st.Handles[k], st.Usernames[k] = l.Handle, l.Username
		}
		rec.SeedS3 = st
		if err := b.Store.UpdateInstance(ctx, rec); err != nil {
			// Another replica advanced the record; it carries on (its
			// login has the same names; a lease of ours ends with its TTL
			// or at deprovision, RevokeUnrecorded).
			return provisioners.Progress{State: rec.Operation.State, Description: rec.Operation.Description}
		}
	}
	st := rec.SeedS3
	if st.Done {
		return b.finishS3Seed(ctx, rec, inst, eng, ready, *src)
	}
	if p, err := eng.Binder.Ready(ctx, inst, st.result()); err != nil || p.State != provisioners.Succeeded {
		return inProgress("waiting for the seed's login (%s)", p.Description+errSuffix(err))
	}
	job, err := b.Kube.Get(ctx, jobRef)
	if err != nil {
		return inProgress("reading the Job %s: %v", jobRef.Name, err)
	}
	if job == nil {
		obj, err := seeder.S3SeedJob(inst, postgres.S3SeedJob{Source: *src, LoginSecret: st.SecretName})
		if err != nil {
			// The broker's configuration (no seed image): nothing will run.
			if rerr := b.revokeS3SeedLogin(ctx, rec, inst, eng); rerr != nil {
				b.logger(ctx).Warn("revoke the seed's login", zap.String("instance", rec.ID), zap.Error(rerr))
			}
			return provisioners.Progress{State: provisioners.Failed, Description: "parameters.seed.s3: " + err.Error()}
		}
		if err := b.createObject(ctx, obj); err != nil {
			return inProgress("creating the Job %s: %v", jobRef.Name, err)
		}
		b.logger(ctx).Info("seeding from S3", zap.String("instance", rec.ID), zap.String("job", jobRef.Name))
		return provisioners.Progressing(desc)
	}
	var pods []*unstructured.Unstructured
	if l, ok := b.Kube.(objectLister); ok {
		if pods, err = l.List(ctx, podGVK, inst.Namespace); err != nil {
			return inProgress("reading the Job's pods: %v", err)
		}
	}
	p := postgres.AssessS3Seed(inst, *src, job, pods)
	switch p.State {
	case provisioners.Succeeded:
		// Recorded before the Job goes: a Job once complete is never
		// created again.
		rec.SeedS3 = &SeedS3State{Operation: st.Operation, SecretName: st.SecretName, Handles: st.Handles, Usernames: st.Usernames, Done: true}
		if err := b.Store.UpdateInstance(ctx, rec); err != nil {
			return provisioners.Progress{State: rec.Operation.State, Description: rec.Operation.Description}
		}
		return b.finishS3Seed(ctx, rec, inst, eng, ready, *src)
	case provisioners.Failed:
		// The login goes now; the Job stays for its log until the
		// instance is deprovisioned (or the provision retried).
		if err := b.revokeS3SeedLogin(ctx, rec, inst, eng); err != nil {
			b.logger(ctx).Warn("revoke the seed's login", zap.String("instance", rec.ID), zap.Error(err))
		}
	}
	return p
}

// finishS3Seed removes the seed's login and Job once it is done, and
// succeeds once the Job (deleted with its pods first) is gone.
func (b *Broker) finishS3Seed(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine, ready provisioners.Progress, src postgres.S3Seed) provisioners.Progress {
	desc := "seeded from s3://" + src.Bucket + "/" + src.Key
	if err := b.removeS3Seed(ctx, rec, inst, eng); err != nil {
		return provisioners.Progressing(desc + "; removing the seed's Job and login: " + err.Error())
	}
	ref := postgres.S3SeedJobRef(inst)
	if job, err := b.Kube.Get(ctx, ref); err != nil || job != nil {
		return provisioners.Progressing(fmt.Sprintf("%s; waiting for the Job %s to go%s", desc, ref.Name, errSuffix(err)))
	}
	return seeded(ready, src)
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

func seeded(ready provisioners.Progress, src postgres.S3Seed) provisioners.Progress {
	ready.Description += "; seeded from s3://" + src.Bucket + "/" + src.Key
	return ready
}

// revokeS3SeedLogin revokes the recorded login and whatever was issued
// under its id; idempotent.
func (b *Broker) revokeS3SeedLogin(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine) error {
	var errs []error
	if rec.SeedS3 != nil {
		errs = append(errs, eng.Binder.Unbind(ctx, inst, rec.SeedS3.result()))
	}
	id := seedLoginID(inst)
	errs = append(errs, eng.Binder.RevokeUnrecorded(ctx, inst, id), eng.Binder.Forget(ctx, inst, id))
	return errors.Join(errs...)
}

// removeS3Seed revokes the seed's login and deletes its Job (with its
// pods); idempotent.
func (b *Broker) removeS3Seed(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine) error {
	return errors.Join(b.revokeS3SeedLogin(ctx, rec, inst, eng), b.Kube.Delete(ctx, postgres.S3SeedJobRef(inst)))
}

// revokeS3SeedLoginIfAny is deprovision's part: the login of an instance
// seeded from S3 is revoked (the Job is one of the provisioner's
// leftovers, deleted with the objects).
func (b *Broker) revokeS3SeedLoginIfAny(ctx context.Context, rec *InstanceRecord, inst provisioners.Instance, eng Engine) error {
	seeder, ok := eng.Provisioner.(s3Seeder)
	if !ok {
		return nil
	}
	if src, err := seeder.S3SeedOf(inst); rec.SeedS3 == nil && (err != nil || src == nil) {
		return nil
	}
	if rec.SeedS3 != nil && rec.SeedS3.Done {
		// Revoked before the provision succeeded.
		return nil
	}
	return b.revokeS3SeedLogin(ctx, rec, inst, eng)
}

// objectCreator creates an object unless one of its name exists
// (provisioners.Kube): the seed Job is created, never patched, so the
// broker's RBAC on Jobs is create, get and delete.
type objectCreator interface {
	Create(ctx context.Context, o *unstructured.Unstructured) (bool, error)
}

func (b *Broker) createObject(ctx context.Context, o *unstructured.Unstructured) error {
	if c, ok := b.Kube.(objectCreator); ok {
		_, err := c.Create(ctx, o)
		return err
	}
	return b.Kube.Apply(ctx, []*unstructured.Unstructured{o})
}
