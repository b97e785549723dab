CREATE TABLE orders (
    id   bigserial PRIMARY KEY,
    body text NOT NULL
);
-- Who ran the migration: the binding's migration login acting as strata_owner.
CREATE TABLE migration_session AS
    SELECT session_user::text AS session_login, current_user::text AS acting_role;
