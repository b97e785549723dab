package broker

import (
	"context"
	"errors"

	"github.com/strata-dev/strata/binding"
)

func resultOf(r *BindingRecord) binding.Result {
	logins := map[string]binding.Login{}
	for k, h := range r.Handles {
		logins[k] = binding.Login{Handle: h}
	}
	if u, ok := r.Credentials["username"].(string); ok {
		if l, ok := logins["app"]; ok {
			l.Username = u
			logins["app"] = l
		}
	}
	return binding.Result{Credentials: r.Credentials, SecretName: r.SecretName, Logins: logins}
}

func handlesOf(res binding.Result) map[string]string {
	h := map[string]string{}
	for k, l := range res.Logins {
		h[k] = l.Handle
	}
	return h
}

// liveInstance reads an instance that can take bindings.
func (b *Broker) liveInstance(ctx context.Context, id string) (*InstanceRecord, error) {
	rec, err := b.Store.GetInstance(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && rec.Deleted) {
		return nil, notFound("instance " + id + " does not exist")
	}
	if err != nil {
		return nil, internal(err.Error())
	}
	return rec, nil
}
