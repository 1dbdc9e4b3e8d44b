#!/usr/bin/env python3
"""A fake API server for capturing kubectl request bodies (used by tools/capture.sh).

Serves /version (minor 32), legacy discovery for the resources the typed-client generators
touch, a node with one pod (for drain), and answers every POST/DELETE with 201/200, writing
the request body to OUT/last.pb and a line per request to OUT/requests.log.
usage: capture-server.py PORT OUT
"""
import http.server
import json
import os
import sys
import urllib.parse

OUT = sys.argv[2]
def res(name, kind, namespaced=True, verbs=("create","get","list","delete","patch","update","watch"), sub=None):
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": list(verbs)}
CORE = [res("namespaces","Namespace",False), res("configmaps","ConfigMap"), res("secrets","Secret"),
        res("services","Service"), res("serviceaccounts","ServiceAccount"), res("serviceaccounts/token","TokenRequest",verbs=("create",)),
        res("resourcequotas","ResourceQuota"), res("pods","Pod"), dict(res("pods/eviction","Eviction",verbs=("create",)), group="policy", version="v1"),
        res("nodes","Node",False)]
GROUPS = {
 "apps/v1": [res("deployments","Deployment"), res("daemonsets","DaemonSet"), res("replicasets","ReplicaSet"), res("statefulsets","StatefulSet")],
 "batch/v1": [res("jobs","Job"), res("cronjobs","CronJob")],
 "rbac.authorization.k8s.io/v1": [res("roles","Role"), res("clusterroles","ClusterRole",False), res("rolebindings","RoleBinding"), res("clusterrolebindings","ClusterRoleBinding",False)],
 "scheduling.k8s.io/v1": [res("priorityclasses","PriorityClass",False)],
 "policy/v1": [res("poddisruptionbudgets","PodDisruptionBudget")],
 "networking.k8s.io/v1": [res("ingresses","Ingress")],
 "authentication.k8s.io/v1": [res("selfsubjectreviews","SelfSubjectReview",False,("create",)), res("tokenreviews","TokenReview",False,("create",))],
 "authorization.k8s.io/v1": [res("selfsubjectaccessreviews","SelfSubjectAccessReview",False,("create",)), res("selfsubjectrulesreviews","SelfSubjectRulesReview",False,("create",))],
}
POD = {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"default","uid":"u1",
       "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-abc","uid":"u2","controller":True}]},
       "spec":{"nodeName":"node1","containers":[{"name":"c","image":"nginx"}]},"status":{"phase":"Running"}}
NODE = {"apiVersion":"v1","kind":"Node","metadata":{"name":"node1","uid":"n1"},"spec":{"unschedulable":True}}
class H(http.server.BaseHTTPRequestHandler):
    def send(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type","application/json"); self.send_header("Content-Length",str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *args):
        pass
    def do_GET(self):
        p = urllib.parse.urlparse(self.path).path
        with open(os.path.join(OUT, "requests.log"), "a") as f: f.write(f"GET {self.path}\n")
        if p == "/version": return self.send(200, {"major":"1","minor":"32","gitVersion":"v1.32.5"})
        if p == "/api": return self.send(200, {"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]})
        if p == "/api/v1": return self.send(200, {"kind":"APIResourceList","groupVersion":"v1","resources":CORE})
        if p == "/apis":
            groups = []
            for gv in GROUPS:
                g, v = gv.split("/")
                groups.append({"name": g, "versions":[{"groupVersion":gv,"version":v}], "preferredVersion":{"groupVersion":gv,"version":v}})
            return self.send(200, {"kind":"APIGroupList","apiVersion":"v1","groups":groups})
        if p.startswith("/apis/") and p[6:] in GROUPS:
            return self.send(200, {"kind":"APIResourceList","groupVersion":p[6:],"resources":GROUPS[p[6:]]})
        if p == "/api/v1/nodes/node1": return self.send(200, NODE)
        if p == "/api/v1/pods": return self.send(200, {"kind":"PodList","apiVersion":"v1","metadata":{},"items":[POD]})
        if p == "/api/v1/namespaces/default/pods/web-1": return self.send(404, {"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"details":{"name":"web-1","kind":"pods"}})
        if p.startswith("/api/v1/namespaces/default/serviceaccounts/"): return self.send(200, {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default","namespace":"default"}})
        return self.send(404, {"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404})
    def do_DELETE(self):
        n = int(self.headers.get("Content-Length", 0)); body = self.rfile.read(n)
        with open(os.path.join(OUT, "requests.log"), "a") as f: f.write(f"DELETE {self.path} {self.headers.get('Content-Type')} -> last.pb\n")
        with open(os.path.join(OUT, "last.pb"), "wb") as f: f.write(body)
        return self.send(200, POD)
    def do_PATCH(self):
        n = int(self.headers.get("Content-Length", 0)); self.rfile.read(n)
        return self.send(200, NODE)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0)); body = self.rfile.read(n)
        name = "last"
        ct = self.headers.get("Content-Type")
        with open(os.path.join(OUT, "requests.log"), "a") as f: f.write(f"POST {self.path} {ct} -> {name}.pb\n")
        with open(os.path.join(OUT, f"{name}.pb"), "wb") as f: f.write(body)
        p = urllib.parse.urlparse(self.path).path
        if p.endswith("/token"):
            return self.send(201, {"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","metadata":{"name":"default"},"spec":{"audiences":["a"]},"status":{"token":"tok","expirationTimestamp":"2030-01-01T00:00:00Z"}})
        if p.endswith("selfsubjectaccessreviews"):
            return self.send(201, {"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{},"status":{"allowed":True}})
        if p.endswith("selfsubjectreviews"):
            return self.send(201, {"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview","status":{"userInfo":{"username":"admin","groups":["system:masters"]}}})
        if p.endswith("/eviction"):
            return self.send(201, {"kind":"Status","apiVersion":"v1","status":"Success","code":201})
        try:
            obj = json.loads(body)
        except Exception:
            obj = {"apiVersion":"v1","kind":"Status","metadata":{"name":"x"}}
        return self.send(201, obj)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
