#!/usr/bin/env sh
# A small bank-account history, appended through a pipeline, replayed, folded into
# balances, verified and described.
# Uses the default log (./events.lmdb, or $EVLOG_PATH). Every event carries an
# id, so running the demo again appends nothing new: appends are idempotent.
set -eu

echo "== append: NDJSON events through a pipe =="
cat <<'NDJSON' | evlog append
{"type": "account.opened", "stream": "account-1", "id": "demo-1", "data": {"owner": "Ada"}}
{"type": "deposit", "stream": "account-1", "id": "demo-2", "data": {"amount": 100}}
{"type": "account.opened", "stream": "account-2", "id": "demo-3", "data": {"owner": "Grace"}}
{"type": "deposit", "stream": "account-2", "id": "demo-4", "data": {"amount": 250}}
{"type": "withdraw", "stream": "account-1", "id": "demo-5", "data": {"amount": 30}}
NDJSON

echo "== append: one event from arguments (prints its seq) =="
evlog append deposit amount:=45 --stream account-1 --id demo-6 --meta teller=bob

echo "== replay: every event, as NDJSON =="
evlog replay | cat

echo "== replay: one stream, one line per event =="
evlog replay --stream account-1 --template '{seq}\t{type}\t{data[amount]}'

echo "== fold: each account's balance, now and after the first three events =="
evlog replay --by stream --init '{"balance": 0}' --on deposit 's.balance += d.amount' --on withdraw 's.balance -= d.amount'
evlog replay --until 3 --by stream --init '{"balance": 0}' --on deposit 's.balance += d.amount' --on withdraw 's.balance -= d.amount'

echo "== verify: the records, the indexes and the hash chain =="
evlog verify

echo "== info =="
evlog info -o json
