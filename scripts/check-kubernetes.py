#!/usr/bin/env python3
"""Checks deploy/kubernetes without a cluster: renders each overlay as `kustomize build`
would (resources, strategic-merge patches, namespace), validates core objects against the
Kubernetes schemas (kubernetes-validate, strict: unknown fields fail), KEDA and Prometheus
Operator objects against their CRD models (scripts/check-crds.mjs), the pipeline file in the
ConfigMap with `sluice validate --no-env`, and what schemas cannot see: probes and monitors
name ports the container has, the grace period outlasts Sluice's shutdown, memory follows the
budget rule, scalers stop at the partition count and cool down past a rebalance.

  check-kubernetes.py SLUICE_BIN DIR         check every overlay under DIR/overlays
  check-kubernetes.py SLUICE_BIN DIR --self-test
                                              also check that broken copies are rejected
"""
import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

K8S_VERSION = "1.31.0"
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "PodMonitor")}
# Sluice's own shutdown: storage retries (10 s), the last commit (10 s), leaving the group (10 s).
SHUTDOWN_SECS = 30
# Partitions of the topic the manifests scale over (device-signals, as docker-compose makes it).
PARTITIONS = 4
MIB = 1024 * 1024


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def merge(base, patch):
    """Strategic merge as kustomize does it for the fields these manifests use: maps merge,
    lists of named maps (containers, env, ports, volumes) merge by name, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    named = lambda xs: isinstance(xs, list) and all(isinstance(x, dict) and "name" in x for x in xs)
    if named(base) and named(patch):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            at = next((i for i, x in enumerate(out) if x["name"] == item["name"]), None)
            if at is None:
                out.append(copy.deepcopy(item))
            else:
                out[at] = merge(out[at], item)
        return out
    return copy.deepcopy(patch)


def render(directory):
    directory = pathlib.Path(directory)
    k = load_docs(directory / "kustomization.yaml")[0]
    objects = []
    for res in k.get("resources", []):
        path = directory / res
        objects.extend(render(path) if path.is_dir() else load_docs(path))
    for patch in k.get("patches", []):
        for p in load_docs(directory / patch["path"]):
            key = (p["kind"], p["metadata"]["name"])
            hits = [i for i, o in enumerate(objects) if (o["kind"], o["metadata"]["name"]) == key]
            if len(hits) != 1:
                raise SystemExit(f"{directory}: patch {patch['path']} targets {key}, found {len(hits)}")
            objects[hits[0]] = merge(objects[hits[0]], p)
    if "namespace" in k:
        for o in objects:
            o.setdefault("metadata", {})["namespace"] = k["namespace"]
    return objects


def quantity_bytes(q):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(q))
    if not m:
        return None
    return int(m.group(1)) * {None: 1, "Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}[m.group(2)]


def check(objects, sluice_bin):
    problems = []
    by_kind = lambda kind: [o for o in objects if o["kind"] == kind]
    for o in objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if (o["apiVersion"], o["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{name}: {e.message} at {'.'.join(map(str, e.path))}")
    crds = [o for o in objects if (o["apiVersion"], o["kind"]) in CRD_KINDS]
    crd_check = subprocess.run(["node", str(pathlib.Path(__file__).with_name("check-crds.mjs"))],
                               input=json.dumps(crds), capture_output=True, text=True)
    if crd_check.returncode != 0:
        problems.extend(l for l in (crd_check.stdout + crd_check.stderr).splitlines() if l)

    pipelines = {}
    for cm in by_kind("ConfigMap"):
        for key, text in cm.get("data", {}).items():
            if key.endswith(".toml"):
                with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
                    f.write(text)
                out = subprocess.run([sluice_bin, "validate", "--no-env", f.name], capture_output=True, text=True)
                if out.returncode != 0:
                    problems.append(f"ConfigMap/{cm['metadata']['name']} {key}: {out.stderr.strip()}")
                pipelines[cm["metadata"]["name"]] = text

    pod_ports = set()
    for d in by_kind("Deployment"):
        spec = d["spec"]["template"]["spec"]
        name = f"Deployment/{d['metadata']['name']}"
        if spec.get("terminationGracePeriodSeconds", 30) <= SHUTDOWN_SECS:
            problems.append(f"{name}: terminationGracePeriodSeconds must exceed Sluice's shutdown ({SHUTDOWN_SECS} s)")
        for c in spec["containers"]:
            ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            pod_ports |= ports
            for probe in ("readinessProbe", "livenessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is None:
                    problems.append(f"{name}: container {c['name']} has no {probe} over HTTP")
                elif port not in ports:
                    problems.append(f"{name}: {probe} uses port {port!r}, which container {c['name']} does not declare")
            budget = None
            for vol in spec.get("volumes", []):
                text = pipelines.get(vol.get("configMap", {}).get("name"))
                m = text and re.search(r"max_buffered_bytes\s*=\s*(\d+)", text)
                budget = int(m.group(1)) if m else budget
            res = c.get("resources", {})
            if budget is not None:
                want = {"requests": budget + 256 * MIB, "limits": 2 * budget + 256 * MIB}
                for kind, expected in want.items():
                    got = quantity_bytes(res.get(kind, {}).get("memory"))
                    if got != expected:
                        problems.append(f"{name}: {kind}.memory {res.get(kind, {}).get('memory')} breaks the rule (max_buffered_bytes {budget // MIB} Mi: expected {expected // MIB}Mi)")
    for pm in by_kind("PodMonitor"):
        for ep in pm["spec"].get("podMetricsEndpoints", []):
            if ep.get("port") not in pod_ports:
                problems.append(f"PodMonitor/{pm['metadata']['name']}: port {ep.get('port')!r} is not a container port")
    for svc in by_kind("Service"):
        for p in svc["spec"].get("ports", []):
            if p.get("targetPort", p.get("port")) not in pod_ports:
                problems.append(f"Service/{svc['metadata']['name']}: targetPort {p.get('targetPort')!r} is not a container port")
    deployments = {d["metadata"]["name"] for d in by_kind("Deployment")}
    for so in by_kind("ScaledObject"):
        s = so["spec"]
        if s.get("scaleTargetRef", {}).get("name") not in deployments:
            problems.append(f"ScaledObject/{so['metadata']['name']}: scales no Deployment of the render")
        if s.get("maxReplicaCount", 100) > PARTITIONS:
            problems.append(f"ScaledObject/{so['metadata']['name']}: maxReplicaCount beyond the {PARTITIONS} partitions")
        if s.get("cooldownPeriod", 300) < 300:
            problems.append(f"ScaledObject/{so['metadata']['name']}: cooldownPeriod shorter than a rebalance and a takeover")
    for hpa in by_kind("HorizontalPodAutoscaler"):
        s = hpa["spec"]
        if s["scaleTargetRef"]["name"] not in deployments:
            problems.append(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: scales no Deployment of the render")
        if s["maxReplicas"] > PARTITIONS:
            problems.append(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: maxReplicas beyond the {PARTITIONS} partitions")
    return problems


def check_tree(root, sluice_bin):
    failed = {}
    for overlay in sorted((pathlib.Path(root) / "overlays").iterdir()):
        problems = check(render(overlay), sluice_bin)
        if problems:
            failed[overlay.name] = problems
    return failed


def edit_yaml(path, change):
    docs = load_docs(path)
    change(docs[0])
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def self_test(root, sluice_bin):
    """Broken copies of the tree must be rejected, each for its own reason."""
    def without_probe_port(d):
        d["spec"]["template"]["spec"]["containers"][0]["ports"] = []

    def renamed_scaledobject_field(s):
        s["spec"]["scaleTarget"] = s["spec"].pop("scaleTargetRef")

    def unknown_core_field(d):
        d["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}

    def short_grace(d):
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 10

    def too_many_replicas(s):
        s["spec"]["maxReplicaCount"] = 40

    cases = [
        ("base/deployment.yaml", without_probe_port, "does not declare"),
        ("overlays/azure/scaledobject.yaml", renamed_scaledobject_field, "scaleTargetRef"),
        ("base/deployment.yaml", unknown_core_field, "livenessProbes"),
        ("base/deployment.yaml", short_grace, "terminationGracePeriodSeconds"),
        ("overlays/azure/scaledobject.yaml", too_many_replicas, "partitions"),
    ]
    bad = []
    for rel, change, expect in cases:
        with tempfile.TemporaryDirectory() as tmp:
            copy_root = pathlib.Path(tmp) / "kubernetes"
            shutil.copytree(root, copy_root)
            edit_yaml(copy_root / rel, change)
            found = [p for ps in check_tree(copy_root, sluice_bin).values() for p in ps]
            if not any(expect in p for p in found):
                bad.append(f"{rel} with {change.__name__} was not rejected for '{expect}': {found}")
            else:
                print(f"rejected as it should be: {rel} with {change.__name__}")
    return bad


def main():
    sluice_bin, root = sys.argv[1], sys.argv[2]
    failed = check_tree(root, sluice_bin)
    for overlay, problems in failed.items():
        for p in problems:
            print(f"overlays/{overlay}: {p}")
    if not failed:
        overlays = sorted(p.name for p in (pathlib.Path(root) / "overlays").iterdir())
        print(f"kubernetes manifests: ok ({', '.join(overlays)})")
    bad = self_test(root, sluice_bin) if "--self-test" in sys.argv else []
    for b in bad:
        print(b)
    sys.exit(1 if failed or bad else 0)


if __name__ == "__main__":
    main()
