#!/usr/bin/env bash
# Benchmarks of the audit log (issue 5), all in one run on this machine:
#   - append throughput with group commit (entries/s, with 2, 32 and 128
#     concurrent writers; every batch is written and fdatasync'ed);
#   - the read path (GET /fhir/Observation/{id} over HTTP, clients in the
#     same process) with auditing off and on, 32 and 128 clients;
#   - verify time for a log of N entries (default 1,000,000);
#   - inclusion and consistency proof latency in that log.
# Needs: go. Usage: bench/audit.sh [entries]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
echo "== $(nproc) CPUs, $(go version)"
echo "== appends"
go test ./internal/audit -run XXX -bench 'Append' -benchtime 3s | grep Benchmark
echo "== read path, auditing off and on"
go test ./cmd/ehrvault -run XXX -bench 'ReadPath' -benchtime 5s | grep Benchmark
echo "== verify and proofs, a log of $n entries"
go test ./internal/audit -run XXX -bench 'Verify' -benchtime 1x -timeout 60m -args -verify-size="$n" | grep Benchmark
go test ./internal/audit -run XXX -bench 'Prove' -benchtime 2000x -timeout 60m -args -verify-size="$n" | grep Benchmark
