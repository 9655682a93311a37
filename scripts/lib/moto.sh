# moto's S3 server, in auth mode: unlike Garage it honours conditional PUTs atomically, and
# only in auth mode does it check SigV4 signatures at all. Sourced by scripts/services.sh.
# shellcheck shell=bash
# Its globals are read by the other lib files and services.sh:
# shellcheck disable=SC2034

MOTO_VERSION=5.2.5
MOTO_VENV=$CACHE_DIR/moto-venv
MOTO_PY=$MOTO_VENV/bin/python
MOTO_REGION=us-east-1
MOTO_BUCKET=stigvault-test
MOTO_BUCKET2=stigvault-test-2

ensure_moto() {
    venv_is_marked "$MOTO_VENV" "moto[server]==$MOTO_VERSION" && return 0
    # moto depends on boto3, which the bootstrap and smoke checks below use too.
    install_venv "$MOTO_VENV" "moto[server]==$MOTO_VERSION"
    mark_venv "$MOTO_VENV" "moto[server]==$MOTO_VERSION"
}

# Starts moto in $1 (a fresh directory) and sets MOTO_PORT, MOTO_ACCESS_KEY_ID and
# MOTO_SECRET_ACCESS_KEY. Calls record_pid (services.sh) as soon as the process exists.
start_moto() {
    local dir=$1/moto pid creds
    mkdir -p "$dir"
    MOTO_PORT=$(free_ports 1) || die "cannot find a free port for moto"

    # Auth mode: the first 3 requests are served without checking credentials, every later one
    # must be signed by a key that moto's own IAM knows. moto keeps all state in memory, so each
    # start is empty.
    INITIAL_NO_AUTH_ACTION_COUNT=3 \
        "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" \
        >"$dir/moto.log" 2>&1 </dev/null &
    pid=$!
    record_pid moto "$pid"
    # TCP only: an HTTP health check would be one of the 3 free calls, and the IAM bootstrap
    # below needs all of them.
    wait_tcp moto "$MOTO_PORT" "$pid" "$dir/moto.log"

    creds=$("$MOTO_PY" - "http://127.0.0.1:$MOTO_PORT" "$MOTO_REGION" "$MOTO_BUCKET" "$MOTO_BUCKET2" <<'EOF'
import json, sys
import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, region, *buckets = sys.argv[1:]
# A retried request would spend another free call, so never retry here.
cfg = Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})

def client(service, key_id="bootstrap", secret="bootstrap", config=cfg):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=key_id, aws_secret_access_key=secret, config=config)

# Exactly the 3 unauthenticated calls: a user, its s3:* policy, its access key.
iam = client("iam")
iam.create_user(UserName="stigvault-ci")
iam.put_user_policy(UserName="stigvault-ci", PolicyName="s3-all", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}))
key = iam.create_access_key(UserName="stigvault-ci")["AccessKey"]
key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]

s3 = client("s3", key_id, secret)
for bucket in buckets:
    s3.create_bucket(Bucket=bucket)

# The free calls are spent now, so a wrong signature and no signature must both be refused.
# If either is served, tests against this server would prove nothing about auth.
def status_of(c):
    try:
        c.list_objects_v2(Bucket=buckets[0])
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    return 200

wrong = status_of(client("s3", key_id, secret + "x"))
if wrong != 403:
    sys.exit(f"moto answered {wrong} to a request signed with a wrong secret, not 403: auth mode is off")
# moto 5.2.5 answers an unsigned request with 500 (its auth code looks up the missing
# Authorization header and raises), not 403; what matters is that it is not served.
unsigned = status_of(client("s3", config=cfg.merge(Config(signature_version=UNSIGNED))))
if unsigned < 400:
    sys.exit(f"moto served an unsigned request ({unsigned}): auth mode is off")
print(f"moto: SigV4 enforced: wrong secret refused with {wrong}, unsigned request with {unsigned}",
      file=sys.stderr)
print(key_id)
print(secret)
EOF
    ) || {
        tail -n 20 "$dir/moto.log" >&2 || true
        die "moto IAM bootstrap failed (full log: $dir/moto.log)"
    }
    { read -r MOTO_ACCESS_KEY_ID; read -r MOTO_SECRET_ACCESS_KEY; } <<<"$creds"
}
