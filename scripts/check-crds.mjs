// Validates KEDA and Prometheus Operator objects against their CRD models
// (@kubernetes-models/keda, @kubernetes-models/prometheus-operator). Reads a JSON array of
// objects on stdin; prints one line per problem and exits 1 if there is any.
import { readFileSync } from "node:fs";

const modules = new URL("../.tools/node_modules/", import.meta.url);
const models = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
  "monitoring.coreos.com/v1/PodMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor",
};
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const obj of objects) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const path = models[key];
  if (!path) {
    console.log(`${key} ${obj.metadata?.name}: no CRD model for this kind`);
    failed = true;
    continue;
  }
  const mod = await import(new URL(`${path}.js`, modules).href);
  const Model = mod[obj.kind] ?? mod.default;
  try {
    new Model(obj).validate();
  } catch (e) {
    console.log(`${key} ${obj.metadata?.name}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
