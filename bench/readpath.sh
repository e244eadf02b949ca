#!/usr/bin/env bash
# Whole-system benchmark of the foundation (issue 2):
#   1. import ../shared/testdata/synthea/smart-r4-2019 into a fresh store and
#      report resources/s;
#   2. load GET /fhir/Patient/{id} and GET /fhir/Observation/{id} with wrk
#      (authenticated, decrypting reads of random ids), then the same bytes
#      from a bare net/http handler (bench/bare) in the same run, and report
#      req/s and latency percentiles of each.
# Needs: go, wrk (apt-get install -y wrk). Usage: bench/readpath.sh [seconds]
# CONNS (32) sets wrk connections; SERVE_FLAGS adds flags to ehrvault serve,
# e.g. SERVE_FLAGS="--audit-flush-every 50ms".
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
conns=${CONNS:-32}
threads=${THREADS:-2}
command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
export EHRVAULT_PASSPHRASE="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

go build -o "$work/ehrvault" ./cmd/ehrvault
go build -o "$work/bare" ./bench/bare
data="$work/data"
"$work/ehrvault" init --data "$data" >/dev/null

echo "== import ../shared/testdata/synthea/smart-r4-2019 ($(nproc) CPUs)"
"$work/ehrvault" import --data "$data" ../shared/testdata/synthea/smart-r4-2019 2>&1 | tail -n 1 | tee "$work/import.txt"

token=$("$work/ehrvault" token create --data "$data" --ttl 1h --label bench 2>/dev/null)
port=18090
# Plain HTTP on loopback and no rate limits, so that the figures compare
# with the bare handler (and with the figures before HTTPS was the default).
"$work/ehrvault" serve --data "$data" --listen 127.0.0.1:$port --log-format json --insecure-http --rate-per-address 0 --rate-per-principal 0 ${SERVE_FLAGS:-} 2>"$work/serve.log" &
for i in $(seq 50); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# Ids to read: every Patient and up to 2000 Observations, taken from the API.
ids() {
  local type=$1 max=$2 url="http://127.0.0.1:$port/fhir/$1?_count=1000" n=0
  while [ -n "$url" ] && [ "$n" -lt "$max" ]; do
    page=$(curl -fsS -H "Authorization: Bearer $token" "$url")
    echo "$page" | grep -o '"fullUrl":"[^"]*"' | sed 's/.*\/\([^/"]*\)"$/\1/' || true
    n=$((n + 1000))
    url=$(echo "$page" | grep -o '"relation":"next","url":"[^"]*"' | sed 's/.*"url":"\([^"]*\)"/\1/' | sed 's/\\u0026/\&/g' || true)
  done | head -n "$max"
}
ids Patient 5000 >"$work/Patient.ids"
ids Observation 2000 >"$work/Observation.ids"

# A wrk script that reads random ids from a file.
cat >"$work/ids.lua" <<'LUA'
local ids = {}
local prefix, token
function init(args)
  prefix, token = args[1], args[2]
  for line in io.lines(args[3]) do ids[#ids + 1] = line end
  math.randomseed(os.time() + math.random(1000))
end
function request()
  local h = {}
  if token ~= "" then h["Authorization"] = "Bearer " .. token end
  return wrk.format("GET", prefix .. ids[math.random(#ids)], h)
end
LUA

run() { # key label port url-prefix token idsfile
  local out="$work/$1.wrk"
  wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$work/ids.lua" "http://127.0.0.1:$3" -- "$4" "$5" "$6" >"$out"
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$out")
  p50=$(awk '$1=="50%" {print $2}' "$out")
  p99=$(awk '$1=="99%" {print $2}' "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
  printf "%-38s %10s req/s   p50 %-9s p99 %-9s %s\n" "$2" "$rps" "$p50" "$p99" "${non2xx:+non-2xx: $non2xx}"
  echo "$rps" >"$work/$1.rps"
}

echo "== reads: wrk -t$threads -c$conns -d${secs}s, random ids"
for type in Patient Observation; do
  first=$(head -n 1 "$work/$type.ids")
  run "ehrvault-$type" "ehrvault GET /fhir/$type/{id}" "$port" "/fhir/$type/" "$token" "$work/$type.ids"
  curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/fhir/$type/$first" >"$work/$type.json"
  "$work/bare" -listen 127.0.0.1:18099 -file "$work/$type.json" &
  bare=$!
  for i in $(seq 50); do curl -fsS "http://127.0.0.1:18099/" >/dev/null 2>&1 && break; sleep 0.1; done
  run "bare-$type" "bare handler, same bytes ($type)" 18099 "/x/" "" "$work/$type.ids"
  kill $bare; wait $bare 2>/dev/null || true
  awk -v a="$(cat "$work/ehrvault-$type.rps")" -v b="$(cat "$work/bare-$type.rps")" \
    'BEGIN { printf "%-38s %9.0f%% of the bare handler\n", "  ratio", 100*a/b }'
done
