package dev.strata.test.migration;

import org.flywaydb.core.Flyway;
import org.flywaydb.core.api.FlywayException;
import org.flywaydb.core.api.output.MigrateResult;

/**
 * Runs Flyway's migrate, then validate, configured only from the FLYWAY_*
 * environment variables (FLYWAY_URL, FLYWAY_USER, FLYWAY_PASSWORD,
 * FLYWAY_LOCATIONS, FLYWAY_INIT_SQL, ...), as the Flyway command line and
 * Maven plugin read them, so the rehearsal script drives it exactly as it
 * would drive a service's own Flyway. Prints one line
 * {@code STRATA-MIGRATE {...}} and exits 0 when every pending migration
 * applied and validated, 1 when Flyway refused or a migration failed (on
 * PostgreSQL the failed migration's transaction is rolled back).
 */
public final class Migrate {
  private Migrate() {}

  public static void main(String[] args) {
    Flyway flyway = Flyway.configure().envVars().load();
    try {
      MigrateResult result = flyway.migrate();
      flyway.validate();
      System.out.println("STRATA-MIGRATE {\"success\": true, \"migrationsExecuted\": " + result.migrationsExecuted
          + ", \"schemaVersion\": " + json(result.targetSchemaVersion) + "}");
      System.exit(0);
    } catch (FlywayException e) {
      System.out.println("STRATA-MIGRATE {\"success\": false, \"error\": " + json(e.getMessage()) + "}");
      System.exit(1);
    }
  }

  private static String json(String s) {
    if (s == null) {
      return "null";
    }
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (c < 0x20) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    return b.append('"').toString();
  }
}
