# The OpenBao policy of the Strata broker (mount "database"; change the
# paths if openBao.databaseMount differs). It manages only connections and
# roles whose names start with "strata-", reads their credentials and
# revokes their leases: nothing else in OpenBao.

# Per-instance connections (created at provision, deleted at deprovision)
# and the rotation of their management role's password.
path "database/config/strata-*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "database/rotate-root/strata-*" {
  capabilities = ["update"]
}

# The shared PostgreSQL cluster's connection is the platform's (written
# once by a platform engineer, docs/openbao.md): the broker may not read,
# rewrite, rotate or delete it, only write roles that use it (named
# strata-shared.<tenant>.<instance>-<access>, matched below). An exact
# path wins over the strata-* globs. Change the name here if
# postgres.shared.openBaoConnection differs.
path "database/config/strata-shared" {
  capabilities = ["deny"]
}
path "database/rotate-root/strata-shared" {
  capabilities = ["deny"]
}

# One role per access level of each instance.
path "database/roles/strata-*" {
  capabilities = ["create", "read", "update", "delete"]
}

# Bind: issue a login, under a token of the strata-binding token role
# (orphan: the login outlives the broker's own token). That token's only
# policy is openbao-binding-policy.hcl.
path "auth/token/create/strata-binding" {
  capabilities = ["update"]
}

# Unbind: revoke one lease (by path, so only Strata's leases).
path "sys/leases/revoke/database/creds/strata-*" {
  capabilities = ["update"]
}

# Deprovision: revoke whatever leases an instance still has.
path "sys/leases/revoke-prefix/database/creds/strata-*" {
  capabilities = ["update", "sudo"]
}
path "sys/leases/revoke-force/database/creds/strata-*" {
  capabilities = ["update", "sudo"]
}

# KV version 2 (mount "secret"; change the paths if the KV mount differs):
# instance secrets, such as a Redis instance's password, under
# strata/<namespace>/<instance>. Written at provision, read at bind, and
# deleted with all their versions at deprovision.
path "secret/data/strata/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/strata/*" {
  capabilities = ["delete"]
}
