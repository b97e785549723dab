package broker

import (
	"context"
	"errors"

	"github.com/strata-dev/strata/binding"
)

// usernameKeys are the credentials that carry each login's username: the
// application's, and the migrations' owner login of a PostgreSQL readwrite
// binding (Flyway's user).
var usernameKeys = map[string]string{"app": "username", "migrations": "spring.flyway.user"}

// resultOf rebuilds what the binder returned from the record: the logins
// (their handles, and their usernames, which readiness messages name) and
// the Secret.
func resultOf(r *BindingRecord) binding.Result {
	logins := map[string]binding.Login{}
	for k, h := range r.Handles {
		l := binding.Login{Handle: h}
		l.Username, _ = r.Credentials[usernameKeys[k]].(string)
		logins[k] = l
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
