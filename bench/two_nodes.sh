#!/usr/bin/env bash
# The several-machines path (torchrun --nnodes 2, c10d rendezvous, gloo) on one machine: two torchrun
# invocations, node_rank 0 and 1, one process each, meet at a rendezvous on localhost and run one genir run.
#   bash bench/two_nodes.sh DATASET OUT [genir run flags...]
# e.g. bash bench/two_nodes.sh scifact /tmp/two-nodes --method dsi-semantic --baseline bm25 --epochs 2
set -euo pipefail
dataset=$1; out=$2; shift 2
port=${PORT:-29533}
pids=()
for node in 0 1; do
  OMP_NUM_THREADS=1 torchrun --nnodes 2 --node_rank "$node" --nproc_per_node 1 --rdzv_backend c10d \
    --rdzv_endpoint "127.0.0.1:$port" --rdzv_id genir-two-nodes \
    -m genir.cli run --dataset "$dataset" --out "$out" "$@" > "$out.node$node.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
python -c "import json,sys; r=json.load(open(sys.argv[1])); print('processes', r['processes']); \
[print(s['name'], round(s['metrics']['full']['nDCG@10'], 4)) for s in r['systems']]" "$out/report.json"
exit $status
