#!/bin/sh
# A curl consumer of `rotator proxy`: calls until STOP_FILE exists, alternating GET and POST,
# one line per call to OUT_FILE: "<status> <method> <id> <seconds> <end, Unix time> <retry-after or ->".
base=$1 out=$2 stop=$3 prefix=$4
n=0
while [ ! -e "$stop" ]; do
  n=$((n + 1))
  id="$prefix-$n"
  if [ $((n % 2)) -eq 0 ]; then
    line=$(curl -sS -o /dev/null -X POST -H "X-Request-Id: $id" -H "Content-Type: application/json" \
      --data-binary "{\"id\":\"$id\"}" -w '%{http_code} %{time_total}' "$base/v2/decisioning/models" 2>/dev/null)
    m=POST
  else
    line=$(curl -sS -o /dev/null -H "X-Request-Id: $id" -w '%{http_code} %{time_total}' \
      "$base/v2/decisioning/models" 2>/dev/null)
    m=GET
  fi
  set -- $line
  echo "${1:-ERR} $m $id ${2:-0} $(date +%s.%N) -" >> "$out"
  sleep 0.01
done
