package catalog

// RedisPlan is what a Redis plan stands for (RedisFailover with Sentinel).
type RedisPlan struct{}

func redisSchemas(*RedisPlan) PlanSchemas { return PlanSchemas{} }
