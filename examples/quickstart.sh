#!/usr/bin/env bash
# Build sprout, start a daemon on a private socket, deploy the python,
# native and Lambda (zip package) examples, invoke them, and stop. Run as
# root from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p sprout -p hello-native
sprout=target/release/sprout
work=$(mktemp -d /tmp/sprout-quickstart.XXXXXX)
export SPROUT_SOCKET="$work/sprout.sock"

"$sprout" serve --state-dir "$work/state" 2>"$work/daemon.log" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$SPROUT_SOCKET" ] && break; sleep 0.1; done

mkdir -p "$work/native"
cp target/release/bootstrap "$work/native/bootstrap"
# A Lambda deployment package, as one would upload it to AWS.
(cd examples/hello-lambda && /usr/bin/python3 -m zipfile -c "$work/hello-lambda.zip" lambda_function.py greetings.json)
python=$(/usr/bin/python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')

set -x
"$sprout" deploy hello-py --runtime python --handler app.handler --code examples/hello-python
"$sprout" deploy hello-rs --runtime native --code "$work/native"
"$sprout" deploy hello-lambda --runtime "$python" --handler lambda_function.lambda_handler --code "$work/hello-lambda.zip"
"$sprout" invoke hello-py '{"name": "quick start"}'
"$sprout" invoke hello-rs '{"name": "quick start"}' --json
echo '{"name": "stdin"}' | "$sprout" invoke hello-py - --json
"$sprout" invoke hello-lambda '{"name": "quick start", "language": "fr"}'
"$sprout" list
