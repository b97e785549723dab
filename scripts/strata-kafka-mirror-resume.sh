#!/usr/bin/env bash
# Make a Kafka instance's disaster-recovery mirror, turned on again after a
# failback, resume where the instance's topics ended at the switch instead
# of copying them again from their start (docs/kafka.md, "Failback", step 6).
#
#   strata-kafka-mirror-resume.sh --bootstrap-server DR --command-config FILE \
#       --offsets-topic TOPIC --connector NAME --ends FILE
#
# DR is the DR cluster's bootstrap address and FILE a client configuration
# for it (SASL_SSL, SCRAM-SHA-512; the tenant's DR user is enough: its
# prefix ACLs cover the mirror's topics). TOPIC is the mirror's Connect
# offsets topic there (<prefix>mirror.offsets.internal), NAME its source
# connector (<prefix without its final .>-><DR target>.MirrorSourceConnector)
# and --ends the old cluster's end offsets at the switch as kafka-get-offsets.sh
# prints them (topic:partition:offset, one a line).
#
# The mirror must not be running (no KafkaMirrorMaker2 <cluster>-dr): its
# worker would overwrite what this writes. For each partition in --ends with
# records, the script appends to TOPIC the key the connector wrote for that
# partition, byte for byte (["NAME",{"cluster":…,"partition":…,"topic":…}]:
# the same key lands in the same partition, after the old value, and wins),
# with {"offset": end-1}: MirrorMaker 2 resumes after the last record it
# copied. A partition the connector never wrote an offset for is an error
# (it would be copied from its start).
#
# Needs kafka-console-consumer.sh and kafka-console-producer.sh of Kafka 4.x
# (the distribution's bin/) on PATH, and jq. Exit codes: 0 offsets written, 1 a
# partition without an offset (nothing written), 64 usage. No secret is
# printed (they stay in the command config file).
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d' >&2
	exit 64
}

bootstrap="" config="" topic="" connector="" ends=""
while [ $# -gt 0 ]; do
	case "$1" in
	--bootstrap-server) bootstrap=$2; shift 2 ;;
	--command-config) config=$2; shift 2 ;;
	--offsets-topic) topic=$2; shift 2 ;;
	--connector) connector=$2; shift 2 ;;
	--ends) ends=$2; shift 2 ;;
	*) usage ;;
	esac
done
[ -n "$bootstrap" ] && [ -n "$config" ] && [ -n "$topic" ] && [ -n "$connector" ] && [ -f "$ends" ] || usage
for tool in kafka-console-consumer.sh kafka-console-producer.sh jq; do
	command -v "$tool" >/dev/null || { echo "$tool not found on PATH (Kafka's bin/ directory, jq)" >&2; exit 64; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Every key of the offsets topic, once (the topic is compacted; the latest
# value per key is what the worker reads, the key is all that is needed).
# The consumer group is under the prefix too (the tenant's DR user may read
# only groups there); it commits nothing.
kafka-console-consumer.sh --bootstrap-server "$bootstrap" --command-config "$config" \
	--topic "$topic" --from-beginning --timeout-ms 20000 \
	--group "$topic.resume" --command-property enable.auto.commit=false \
	--formatter-property print.key=true --formatter-property key.separator=$'\t' 2>"$work/consumer.log" |
	cut -f1 | sort -u >"$work/keys" || true
if ! [ -s "$work/keys" ]; then
	echo "no record read from $topic (consumer output follows)" >&2
	tail -20 "$work/consumer.log" >&2
	exit 1
fi

missing=0
: >"$work/new"
while IFS=: read -r t p end; do
	case "$end" in '' | *[!0-9]*) continue ;; esac
	[ "$end" -gt 0 ] || continue
	key=""
	while IFS= read -r k; do
		if jq -e --arg c "$connector" --arg t "$t" --argjson p "$p" \
			'type == "array" and .[0] == $c and .[1].topic == $t and .[1].partition == $p' <<<"$k" >/dev/null 2>&1; then
			key=$k
			break
		fi
	done <"$work/keys"
	if [ -z "$key" ]; then
		echo "$t partition $p: connector $connector has no offset in $topic; turned on, it would copy it from its start" >&2
		missing=1
		continue
	fi
	printf '%s\t{"offset":%d}\n' "$key" $((end - 1)) >>"$work/new"
	echo "$t:$p resumes at $end"
done <"$ends"
[ "$missing" = 0 ] || exit 1
[ -s "$work/new" ] || { echo "no partition with records in $ends" >&2; exit 1; }

kafka-console-producer.sh --bootstrap-server "$bootstrap" --command-config "$config" \
	--topic "$topic" --reader-property parse.key=true --reader-property key.separator=$'\t' <"$work/new"
echo "offsets written to $topic for $connector"
