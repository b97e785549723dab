package dev.strata.example;

import java.util.Optional;

import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.stereotype.Repository;

/** Orders in PostgreSQL. */
@Repository
public class Orders {
    private final JdbcTemplate jdbc;

    public Orders(JdbcTemplate jdbc) {
        this.jdbc = jdbc;
    }

    public long add(String body) {
        return jdbc.queryForObject("INSERT INTO orders (body) VALUES (?) RETURNING id", Long.class, body);
    }

    public Optional<String> find(long id) {
        return jdbc.queryForList("SELECT body FROM orders WHERE id = ?", String.class, id).stream().findFirst();
    }
}
