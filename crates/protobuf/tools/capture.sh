#!/bin/bash
# Re-captures tests/fixtures: for each command, the body kubectl 1.32 sends (protobuf, <name>.pb)
# and the body kubectl 1.31 sends (JSON, <name>.json), both against tools/capture-server.py.
# usage: tools/capture.sh [KUBECTL_DIR]   (default: the gcloud SDK's bin, with kubectl.1.3X)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures="$here/../tests/fixtures"
bin=${1:-/usr/lib/google-cloud-sdk/bin}
work=$(mktemp -d)
port=18765
python3 "$here/capture-server.py" $port "$work" &
server=$!
trap 'kill $server; rm -rf "$work"' EXIT
sleep 1
export HOME="$work/home"

capture() { # capture VERSION EXT NAME ARGS...
  local version=$1 ext=$2 name=$3
  shift 3
  rm -f "$work/last.pb"
  "$bin/kubectl.$version" --server "http://127.0.0.1:$port" --cache-dir "$work/cache-$version" \
    "$@" >/dev/null 2>&1 || true
  if [ -f "$work/last.pb" ]; then mv "$work/last.pb" "$fixtures/$name.$ext"; else echo "no body: $name ($version)" >&2; fi
}

for pair in "1.32 pb" "1.31 json"; do
  set -- $pair
  v=$1 ext=$2
  capture $v $ext configmap create configmap x --from-literal=a=b --from-literal=c=d
  capture $v $ext namespace create namespace dev
  capture $v $ext secret_generic create secret generic s --from-literal=password=hunter2 --type=Opaque
  capture $v $ext secret_docker create secret docker-registry r --docker-server=reg.example --docker-username=u --docker-password=p --docker-email=e@x
  capture $v $ext deployment create deployment web --image=nginx --replicas=2 --port=80
  capture $v $ext job create job j --image=busybox -- echo hi
  capture $v $ext cronjob create cronjob cj --image=busybox --schedule='*/5 * * * *' -- date
  capture $v $ext service_clusterip create service clusterip web --tcp=80:8080
  capture $v $ext service_nodeport create service nodeport np --tcp=80:http --node-port=30080
  capture $v $ext service_loadbalancer create service loadbalancer lb --tcp=443:8443
  capture $v $ext service_externalname create service externalname ext --external-name=example.com
  capture $v $ext serviceaccount create serviceaccount robot
  capture $v $ext role create role r --verb=get,list --resource=pods,deployments.apps --resource-name=x
  capture $v $ext clusterrole create clusterrole cr --verb=get --non-resource-url=/healthz
  capture $v $ext clusterrole_aggregate create clusterrole agg --aggregation-rule=rbac.example.com/aggregate=true
  capture $v $ext rolebinding create rolebinding rb --role=r --user=alice --serviceaccount=default:robot --group=devs
  capture $v $ext clusterrolebinding create clusterrolebinding crb --clusterrole=cr --user=bob
  capture $v $ext quota create quota q --hard=cpu=1,memory=1Gi,pods=10 --scopes=BestEffort
  capture $v $ext priorityclass create priorityclass high --value=1000 --description=important --preemption-policy=Never
  capture $v $ext pdb create poddisruptionbudget pdb --selector=app=web --min-available=50%
  capture $v $ext ingress create ingress ing --class=nginx --rule='foo.com/bar*=svc:8080,tls=secret1' --annotation=a=b
  capture $v $ext token create token default --duration=1h --audience=api
  capture $v $ext can_i auth can-i list pods --subresource=log -n kube-system
  capture $v $ext can_i_nonresource auth can-i get /healthz
  capture $v $ext whoami auth whoami
  capture $v $ext delete_options drain node1 --force --disable-eviction --grace-period=10 --timeout=3s
done
