// The workflow parser imports its schema as `import X from "./workflow-v1.0.min.json"`
// (written for a bundler); node wants the import attribute `type: "json"`. This hook
// adds it. Registered by parse-workflows.mjs before the parser is imported.
export async function load(url, context, nextLoad) {
  if (url.endsWith(".json")) {
    const attributes = { ...(context.importAttributes ?? {}), type: "json" };
    return nextLoad(url, { ...context, importAttributes: attributes, importAssertions: attributes });
  }
  return nextLoad(url, context);
}
