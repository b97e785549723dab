package dev.strata.test.binding;

import java.util.Map;

/**
 * Exercises one binding the way an application would and reports what it
 * saw. Add an implementation (a {@code @Component}, conditional on the
 * binding's properties) for each kind of binding: PostgreSQL now, Redis and
 * Kafka later.
 */
public interface BindingCheck {

    /** The key of this check's report in the STRATA-CHECK line. */
    String name();

    /**
     * Uses the binding; throws when it does not work, which makes the
     * application fail with the exception's message.
     */
    Map<String, Object> check() throws Exception;
}
