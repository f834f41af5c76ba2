#!/bin/sh
# A Lambda Runtime API loop: run it under `fsvirt serve -- sh examples/lambda/handler.sh`.
# Each event is a tag: the handler reads two files, appends the tag to log.txt and answers with
# the log as it now reads; "sleep" sleeps past any timeout, "crash" exits. Needs curl.
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation"
data="${FSVIRT_EXAMPLE_DATA:-$(dirname "$0")/data}"
cr=$(printf '\r')
while :; do
  next=$(curl -sSfi "$api/next") || exit 1 # headers, an empty line, the event
  rid=$(printf '%s\n' "$next" | sed -n "s/^[Ll]ambda-[Rr]untime-[Aa]ws-[Rr]equest-[Ii]d: *\([^$cr]*\).*/\1/p")
  tag=$(printf '%s\n' "$next" | sed "1,/^$cr\$/d")
  case $tag in sleep) sleep 3600 ;; crash) exit 3 ;; esac
  cat "$data/a.txt" "$data/b.txt" > /dev/null
  echo "$tag" >> "$data/log.txt"
  curl -sSf -o /dev/null --data-binary @"$data/log.txt" "$api/$rid/response" || exit 1
done
