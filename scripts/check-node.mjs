// `make test` (test-tools): say clearly whether this Node.js is one the pinned MCP Inspector supports.
// The range comes from package-lock.json (so it is known before `npm ci`), not from a copy here.
// Exit status: 0 always (a note, not a failure): the Inspector's CLI mode, which the tests use, also runs on older
// Node versions; only the Inspector's own support statement is at stake. Run: node scripts/check-node.mjs
import { readFileSync } from "node:fs";

const PACKAGE = "@modelcontextprotocol/inspector";

function parse(version) {
  return version.replace(/^v/, "").split(".").map((part) => Number.parseInt(part, 10) || 0);
}

function atLeast(have, want) {
  for (let i = 0; i < 3; i += 1) {
    if ((have[i] ?? 0) !== (want[i] ?? 0)) return (have[i] ?? 0) > (want[i] ?? 0);
  }
  return true;
}

const lock = JSON.parse(readFileSync(new URL("../package-lock.json", import.meta.url), "utf8"));
const entry = lock.packages?.[`node_modules/${PACKAGE}`] ?? {};
const range = entry.engines?.node ?? "";
const minimum = /^>=\s*(\d+(?:\.\d+){0,2})$/.exec(range.trim());
const current = process.versions.node;

if (!minimum) {
  console.log(`note: cannot read ${PACKAGE}'s Node.js requirement ("${range}") from package-lock.json`);
} else if (atLeast(parse(current), parse(minimum[1]))) {
  console.log(`Node.js ${current}: fine for ${PACKAGE} ${entry.version} (needs ${range}).`);
} else {
  console.log(
    `note: Node.js ${current} is older than the ${range} that ${PACKAGE} ${entry.version} declares ` +
      `(npm warns EBADENGINE). Its CLI mode, which the tests use, still runs here; for the supported setup ` +
      `and the Inspector's web UI install Node.js ${minimum[1]} or newer (https://nodejs.org).`,
  );
}
