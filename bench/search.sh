#!/usr/bin/env bash
# Search at scale (issue 3): loads the Synthea sample (smart-r4-2019) again
# and again under fresh ids, SSNs and birth dates into a data directory
# that is kept between runs, then serves the API (authenticated, audited,
# decrypting) and loads each kind of search from 1 and from 8 concurrent
# clients in the same process, reporting p50, p99 and requests/s:
#
#   identifier                      Patient?identifier=<ssn system>|<ssn>
#   name-prefix-birthdate           Patient?family=<3 letters>&birthdate=<day>
#   observations-code-date-sorted   Observation?subject=…&code=<3 LOINC>&date=ge…&date=lt…&_sort=date
#   revinclude-page                 Encounter?subject=…&_count=10&_revinclude=Observation:encounter
#   count-all-observations          Observation?_summary=count
#   count-observations-by-category  Observation?category=…|laboratory&_summary=count
#
# Usage: bench/search.sh [copies] [seconds per search]
#   copies: 254 (the default) make 2.2 million resources, 1 million of
#   them Observations; loading them took about two hours on 2 cores.
# DIR (/tmp/ehrvault-bench-search) keeps the store; CLIENTS ("1,8");
# EHRVAULT_CACHE_MIB (4096) sizes the write cache while loading.
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-254}
secs=${2:-20}
export EHRVAULT_BENCH_DIR=${DIR:-/tmp/ehrvault-bench-search}
export EHRVAULT_BENCH_COPIES=$copies
export EHRVAULT_BENCH_CLIENTS=${CLIENTS:-1,8}
export EHRVAULT_CACHE_MIB=${EHRVAULT_CACHE_MIB:-4096}
echo "== $copies copies of smart-r4-2019 in $EHRVAULT_BENCH_DIR ($(nproc) CPUs)"
go test ./cmd/ehrvault -run '^$' -bench '^BenchmarkSearch$' -benchtime "${secs}s" -timeout 6h | grep -v '^goos\|^goarch\|^pkg\|^cpu'
du -sh "$EHRVAULT_BENCH_DIR"
