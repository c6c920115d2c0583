#!/usr/bin/env bash
# deploy/test.sh (make deploy-test): checks the deployment files of deploy/
# as far as this machine can.
#
# - The Dockerfile's runtime stage, built with podman from a binary built
#   here (its build stage replaced by a directory, so no base image is
#   pulled), run read-only, without capabilities, against the RabbitMQ at
#   AMQP_URL: /__lbheartbeat__ and /__heartbeat__ answer 200, the image's
#   HEALTHCHECK passes, the process runs as 65532, amqps' CA bundle is in
#   place, and `podman stop` (SIGTERM) ends it with exit code 0.
# - The systemd unit: `systemd-analyze verify`, and its exposure score.
# - The Kubernetes manifest: parses, and its grace period covers preStop
#   plus SHUTDOWN_TIMEOUT; the probes are on the right paths.
#
# It fails, never skips, when podman, systemd-analyze or python3-yaml is
# missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
IMAGE=localhost/eventsproxy-deploy-test:$$

die() {
	printf 'deploy/test.sh: FAILED: %s\n' "$*" >&2
	exit 1
}
for tool in podman systemd-analyze python3 curl; do
	command -v "${tool}" >/dev/null || die "${tool} is not installed"
done

work=$(mktemp -d)
container=""
cleanup() {
	if [ -n "${container}" ]; then
		podman "${runtime[@]}" rm -f "${container}" >/dev/null 2>&1 || true
	fi
	podman rmi -f "${IMAGE}" >/dev/null 2>&1 || true
	rm -rf "${work}"
}
trap cleanup EXIT

echo "== image: build the binary and the Dockerfile's runtime stage"
mkdir -p "${work}/build/out"
CGO_ENABLED=0 go build -ldflags "-X eventsproxy/internal/version.Version=deploy-test" \
	-o "${work}/build/out/eventsproxy" ./cmd/eventsproxy
cp /etc/ssl/certs/ca-certificates.crt "${work}/build/out/"
podman build --pull=never --quiet --format docker --build-context "build=${work}/build" \
	-f deploy/Dockerfile -t "${IMAGE}" "${work}" >/dev/null

# crun cannot start containers on a host with hybrid cgroups (this one);
# runc can. Neither may raise a limit above the host's hard limit, which
# podman's defaults do.
runtime=()
if command -v runc >/dev/null; then
	runtime=(--runtime runc)
fi
hard_nofile=$(ulimit -Hn)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

echo "== image: run it"
[ "$(podman image inspect --format '{{.Config.User}}' "${IMAGE}")" = "65532:65532" ] ||
	die "the image's user is not 65532:65532"
container=$(podman "${runtime[@]}" run -d --network host --read-only --cap-drop ALL \
	--security-opt no-new-privileges \
	--ulimit "nofile=${hard_nofile}:${hard_nofile}" --ulimit nproc=4096:4096 \
	-e "LISTEN=127.0.0.1:${port}" -e "AMQP_URL=${AMQP_URL}" \
	-e "QUEUE_PREFIX=eventsproxy-deploy-test/$$/" "${IMAGE}")
for _ in $(seq 1 100); do
	curl -fsS -o /dev/null "http://127.0.0.1:${port}/__heartbeat__" 2>/dev/null && break
	[ "$(podman inspect --format '{{.State.Running}}' "${container}")" = true ] ||
		die "the container exited: $(podman logs "${container}" 2>&1 | tail -5)"
	sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:${port}/__heartbeat__" || die "/__heartbeat__ does not answer 200"
curl -fsS -o /dev/null "http://127.0.0.1:${port}/__lbheartbeat__" || die "/__lbheartbeat__ does not answer 200"
curl -fsS "http://127.0.0.1:${port}/__version__" | grep -q '"deploy-test"' || die "/__version__ is not the binary built here"
podman "${runtime[@]}" healthcheck run "${container}" || die "the image's HEALTHCHECK fails"
user=$(podman "${runtime[@]}" top "${container}" user | tail -n 1 | tr -d ' ')
[ "${user}" = 65532 ] || die "the process runs as ${user}, want 65532"
podman cp "${container}:/etc/ssl/certs/ca-certificates.crt" "${work}/ca.crt"
cmp -s "${work}/ca.crt" /etc/ssl/certs/ca-certificates.crt || die "the image's CA bundle differs from the host's"
podman "${runtime[@]}" stop --time 20 "${container}" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "${container}")
[ "${code}" = 0 ] || die "after SIGTERM the container exited ${code}: $(podman logs "${container}" 2>&1 | tail -5)"
podman logs "${container}" 2>&1 | grep -q 'msg=stopped' || die "no msg=stopped in the log after SIGTERM"
echo "image: builds, serves, passes its health check, runs as 65532 read-only, drains on SIGTERM (exit 0)"

echo "== systemd unit"
sed "s#/usr/local/bin/eventsproxy#${work}/build/out/eventsproxy#" deploy/systemd/eventsproxy.service >"${work}/eventsproxy.service"
out=$(systemd-analyze verify "${work}/eventsproxy.service" 2>&1) || die "systemd-analyze verify: ${out}"
[ -z "${out}" ] || die "systemd-analyze verify: ${out}"
systemd-analyze security --offline=yes --threshold=20 "${work}/eventsproxy.service" | tail -n 1

echo "== kubernetes manifest"
python3 - deploy/kubernetes/eventsproxy.yaml <<'PY'
import sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1]))}
assert set(docs) == {"Deployment", "Service", "PodDisruptionBudget"}, docs.keys()
pod = docs["Deployment"]["spec"]["template"]["spec"]
c = pod["containers"][0]
env = {e["name"]: e.get("value") for e in c["env"]}
def seconds(d):
    assert d.endswith("s"), d
    return int(d[:-1])
grace = pod["terminationGracePeriodSeconds"]
pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
drain = seconds(env["SHUTDOWN_TIMEOUT"])
assert grace > pre + drain, f"terminationGracePeriodSeconds {grace} <= preStop {pre} + SHUTDOWN_TIMEOUT {drain}"
assert c["readinessProbe"]["httpGet"]["path"] == "/__heartbeat__"
assert c["livenessProbe"]["httpGet"]["path"] == "/__lbheartbeat__"
assert pod["securityContext"]["runAsUser"] == 65532
sel = docs["Deployment"]["spec"]["selector"]["matchLabels"]
assert docs["Service"]["spec"]["selector"] == sel
assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == sel
print(f"kubernetes: grace {grace}s > preStop {pre}s + drain {drain}s; probes, user and selectors agree")
PY
echo "deploy/test.sh: OK"
