#!/bin/sh
# The workload both owners agreed on: join the hospital's patients (owner A) with the
# insurer's treatments (owner B) on id and print one aggregate line, never a row.
set -eu
a=/data/a/patients.csv
b=/data/b/treatments.csv
echo "mode=$MODE; inputs: $(wc -l < "$a") + $(wc -l < "$b") lines (headers included)"
awk -F, '
  FNR == 1 { next }
  NR == FNR { age[$1] = $2; next }
  ($1 in age) { n++; cost += $2; years += age[$1] }
  END { printf "aggregate: matched=%d total_cost=%d mean_age=%.1f\n", n, cost, (n ? years / n : 0) }
' "$a" "$b"
# A key for the result, through the workload key-release endpoint (the ACI SKR API).
echo "key-release endpoint: $(wget -q -O- http://127.0.0.1:8080/status)"
wget -q -O /tmp/key.json --header 'Content-Type: application/json' \
  --post-data '{"kid":"shared/result/key"}' http://127.0.0.1:8080/key/release
if grep -q kty /tmp/key.json; then echo "result key released to the workload as a JWK"; fi
if [ "$MODE" = dump-rows ]; then cat "$a" "$b"; fi
