// Validate custom resources with the pinned kubernetes-models validators (see package.json).
//
// Input (stdin): a JSON array of Kubernetes objects. Output (stdout): a JSON array, one entry per
// object, {"index", "apiVersion", "kind", "name", "errors": [...]} where errors is empty for a valid
// object. An apiVersion/kind this script has no model for is an error too ("no model"), so a new
// custom resource kind in the chart cannot pass unvalidated. Exit status: 0 when every object is
// valid, 1 otherwise, 2 on bad input.
const GROUPS = {
  "argoproj.io": "@kubernetes-models/argo-cd",
  "helm.toolkit.fluxcd.io": "@kubernetes-models/flux-cd",
  "source.toolkit.fluxcd.io": "@kubernetes-models/flux-cd",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "keda.sh": "@kubernetes-models/keda",
};

async function modelFor(apiVersion, kind) {
  const slash = apiVersion.indexOf("/");
  if (slash < 0) return null;
  const group = apiVersion.slice(0, slash);
  const pkg = GROUPS[group];
  if (!pkg) return null;
  let mod;
  try {
    mod = await import(`${pkg}/${apiVersion}`);
  } catch {
    return null;
  }
  const model = mod[kind];
  return model && model.kind === kind && model.apiVersion === apiVersion ? model : null;
}

function describe(err) {
  const where = err.instancePath || "(root)";
  const extra = err.params ? ` ${JSON.stringify(err.params)}` : "";
  return `${where}: ${err.message}${extra}`;
}

async function main() {
  let text = "";
  for await (const chunk of process.stdin) text += chunk;
  let objects;
  try {
    objects = JSON.parse(text);
  } catch (e) {
    console.error(`error: stdin is not JSON: ${e.message}`);
    process.exit(2);
  }
  if (!Array.isArray(objects)) {
    console.error("error: stdin must hold a JSON array of objects");
    process.exit(2);
  }
  const results = [];
  for (const [index, obj] of objects.entries()) {
    const { apiVersion = "", kind = "" } = obj ?? {};
    const name = obj?.metadata?.name ?? "";
    const model = await modelFor(apiVersion, kind);
    const errors = [];
    if (!model) {
      errors.push(`no model for ${apiVersion} ${kind}`);
    } else {
      try {
        new model(obj).validate();
      } catch (e) {
        const details = Array.isArray(e.errors) ? e.errors.map(describe) : [];
        errors.push(...(details.length ? details : [String(e.message ?? e)]));
      }
    }
    results.push({ index, apiVersion, kind, name, errors });
  }
  process.stdout.write(JSON.stringify(results));
  process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
}

main();
