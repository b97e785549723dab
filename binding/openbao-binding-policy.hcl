# The policy of the tokens the broker issues logins under (token role
# strata-binding, orphan and non-renewable, as long-lived as the logins):
# reading a Strata login and nothing else.
path "database/creds/strata-*" {
  capabilities = ["read"]
}
