-- Runs as the binding's owner login after spring.flyway.init-sqls
-- (SET ROLE strata_owner): the table must belong to the group role.
CREATE TABLE notes (
    id   bigserial PRIMARY KEY,
    body text NOT NULL
);

-- Record who migrated, for the test to check.
DO $$
BEGIN
    EXECUTE format('COMMENT ON TABLE notes IS %L',
                   format('session_user=%s current_user=%s', session_user, current_user));
END
$$;
