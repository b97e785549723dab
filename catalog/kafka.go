package catalog

// KafkaPlan is what a Kafka plan stands for (Strimzi topics and users).
type KafkaPlan struct{}

func kafkaSchemas(*KafkaPlan) PlanSchemas { return PlanSchemas{} }
