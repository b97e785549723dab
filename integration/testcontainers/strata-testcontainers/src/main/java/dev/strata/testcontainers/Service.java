package dev.strata.testcontainers;

/** The services of Strata's catalog. */
public enum Service {
    POSTGRESQL, REDIS, KAFKA
}
