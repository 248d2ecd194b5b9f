// GitHub's own workflow parser (@actions/workflow-parser) over a batch of workflows.
//
// Reads JSON lines on stdin, one workflow each:
//   {"id": ..., "name": "FILE", "content": "YAML", "called": {"REF": "YAML", ...}, "fetch": BOOL}
// and writes one JSON line per input, in order:
//   {"id": ..., "errors": [{"file": "FILE", "line": L, "col": C, "message": "..."}]}
// (line and col are null for an error GitHub gives no position). A workflow is parsed,
// then converted (as GitHub's own conformance runner does). With "fetch", the reusable
// workflows it calls are fetched one level deep from "called" (a reference not there is
// a missing file); without, they are not looked at. Used by tests/workflow/test_differential.py.
import { register } from "node:module";
import { createInterface } from "node:readline";

register("./json-import-hooks.mjs", import.meta.url);
const { parseWorkflow, convertWorkflowTemplate, NoOperationTraceWriter } = await import("@actions/workflow-parser");

const LOCATED = /^(.*?) \(Line: (\d+), Col: (\d+)\): ([\s\S]*)$/;
const UNLOCATED = /^([^:(]*?): ([\s\S]*)$/;

function split(message) {
  let m = LOCATED.exec(message);
  if (m) return { file: m[1], line: Number(m[2]), col: Number(m[3]), message: m[4] };
  m = UNLOCATED.exec(message);
  if (m) return { file: m[1], line: null, col: null, message: m[2] };
  return { file: null, line: null, col: null, message };
}

async function parseOne(request) {
  const called = request.called ?? {};
  const provider = {
    async getFileContent(ref) {
      const key = ref.repository ? `${ref.owner}/${ref.repository}/${ref.path}@${ref.version}` : `./${ref.path}`;
      const content = called[key] ?? called[key.replace(/^\.\//, "$/")];
      if (content === undefined) throw new Error(`no such file: ${key}`);
      return { name: key, content };
    },
  };
  const parsed = parseWorkflow({ name: request.name, content: request.content }, new NoOperationTraceWriter());
  let messages;
  if (parsed.value === undefined) {
    messages = parsed.context.errors.getErrors().map((e) => e.message);
  } else {
    const template = await convertWorkflowTemplate(parsed.context, parsed.value, provider, {
      fetchReusableWorkflowDepth: request.fetch ? 1 : 0,
      errorPolicy: 1, // ErrorPolicy.TryConversion: report conversion errors too
    });
    messages = (template.errors ?? []).map((e) => e.Message);
  }
  return { id: request.id, errors: messages.map(split) };
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  const request = JSON.parse(line);
  let reply;
  try {
    reply = await parseOne(request);
  } catch (err) {
    reply = { id: request.id, crash: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
