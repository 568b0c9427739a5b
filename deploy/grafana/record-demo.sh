#!/usr/bin/env bash
# Records a real run and draws the dashboard from it (deploy/grafana/idminter.png, shown in the
# README): an idminter server and an adapter (against moto) under a mixed load, scraped every 2 s
# by a real Prometheus (Debian's `prometheus` package, with deploy/prometheus/alerts.yml loaded),
# then every panel's query evaluated by that Prometheus and plotted by render.py (matplotlib).
#
# Needs: ./scripts/test run once (moto in data/venv, promtool/prometheus installed), a built
# binary (cargo build), PostgreSQL at IDMINTER_TEST_DATABASE_URL. MINUTES (default 6) sets the
# length. Everything it starts listens on 127.0.0.1 and is stopped when it exits.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin="${IDMINTER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/idminter}"
py="$root/data/venv/bin/python"
admin_url="${IDMINTER_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
minutes=${MINUTES:-6}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$py" -m pip show matplotlib boto3 >/dev/null 2>&1 ||
  "$root/data/venv/bin/pip" install --quiet --disable-pip-version-check matplotlib boto3

db=idminter_dashboard_demo
psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
db_url="${admin_url%/*}/$db"

grpc=$(port); admin=$(port); adapter_admin=$(port); moto=$(port); prom=$(port)
"$bin" --log-format json serve --migrate --grpc-addr "127.0.0.1:$grpc" \
  --admin-addr "127.0.0.1:$admin" --database-url "$db_url" 2>"$work/server.log" &
pids+=($!)
"$root/data/venv/bin/moto_server" -H 127.0.0.1 -p "$moto" >"$work/moto.log" 2>&1 &
pids+=($!)
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto" AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1 \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true
until "$bin" health --addr "http://127.0.0.1:$grpc" >/dev/null 2>&1; do sleep 0.2; done
until curl -sf "$AWS_ENDPOINT_URL" >/dev/null 2>&1; do sleep 0.2; done

# Queues: the input (with a dead-letter queue after 3 receives) and the output.
read -r in_url out_url < <("$py" - <<'EOF'
import boto3, json
sqs = boto3.client("sqs")
dlq = sqs.create_queue(QueueName="demo-dlq")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
src = sqs.create_queue(QueueName="demo-in", Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})})["QueueUrl"]
out = sqs.create_queue(QueueName="demo-out")["QueueUrl"]
print(src, out)
EOF
)
"$bin" --log-format json adapter --queue-url "$in_url" --output-queue-url "$out_url" \
  --minter-addr "http://127.0.0.1:$grpc" --admin-addr "127.0.0.1:$adapter_admin" \
  --wait-seconds 1 --visibility-timeout 5s --depth-interval 2s 2>"$work/adapter.log" &
pids+=($!)

cat >"$work/prometheus.yml" <<EOF
global: {scrape_interval: 2s, evaluation_interval: 2s}
rule_files: [$root/deploy/prometheus/alerts.yml]
scrape_configs:
  - job_name: idminter
    static_configs: [{targets: ["127.0.0.1:$admin"]}]
  - job_name: idminter-adapter
    static_configs: [{targets: ["127.0.0.1:$adapter_admin"]}]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom" >"$work/prometheus.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$prom/-/ready" >/dev/null; do sleep 0.2; done
start=$(date +%s)

# The load, for $minutes minutes: batches of new and known identifiers, lookups, invalid calls
# (client errors), and documents through the adapter, a few of them poison; in the middle, a
# burst of documents the adapter takes a while to drain.
"$py" - "$grpc" "$in_url" "$minutes" "$bin" <<'EOF'
import boto3, json, random, subprocess, sys, time
grpc, in_url, minutes, bin_ = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
sqs = boto3.client("sqs")
addr = f"http://127.0.0.1:{grpc}"
end = time.time() + minutes * 60
n = 0
def call(cmd, lines):
    subprocess.run([bin_, cmd, "--addr", addr, "--batch-size", "200"], input="\n".join(lines),
                   text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while time.time() < end:
    n += 1
    elapsed = 1 - (end - time.time()) / (minutes * 60)
    new = [f"sierra-system-number/Work/b{n}-{k}" for k in range(random.randint(50, 400))]
    old = [f"sierra-system-number/Work/b{random.randint(1, n)}-{k}" for k in range(random.randint(50, 300))]
    call("mint", new + old)
    call("lookup", old)
    if n % 3 == 0:
        call("mint", ["sierra-system-number/Work/"])          # INVALID_ARGUMENT
    docs = 400 if 0.45 < elapsed < 0.5 else random.randint(2, 10)
    for k in range(0, docs, 10):
        entries = []
        for j in range(k, min(k + 10, docs)):
            doc = {"type": "Identifiable", "sourceIdentifier": {"identifierType": {"id": "miro-image-number"}, "ontologyType": "Image", "value": f"V{n}-{j}"}}
            body = json.dumps(doc) if random.random() > 0.02 else "<not json>"
            entries.append({"Id": str(j), "MessageBody": body})
        sqs.send_message_batch(QueueUrl=in_url, Entries=entries)
    time.sleep(random.uniform(0.5, 1.5))
EOF
end=$(date +%s)
"$py" "$root/deploy/grafana/render.py" --prometheus "http://127.0.0.1:$prom" \
  --start "$start" --end "$end" --step 4 --rate-interval 30s \
  --out "$root/deploy/grafana/idminter.png"
