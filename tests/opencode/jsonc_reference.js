// The JSONC reference for the tests: Microsoft's jsonc-parser, called the way OpenCode 1.18.33 reads its
// config (`parse(text, errors, {allowTrailingComma: true})`, any error refuses the file).
// Usage: node jsonc_reference.js NODE_MODULES_DIR. One JSON-encoded string per line on stdin; one line
// per request on stdout: {"errors": [[code, offset], ...], "value": <what parse returned>}, where a number
// too big for a double is {"__jsonc_reference_nonfinite__": "Infinity"} (or "-Infinity").
"use strict";
const path = require("path");
const readline = require("readline");
const { createRequire } = require("module");

const NONFINITE = "__jsonc_reference_nonfinite__"; // longer than any generated key
const jsonc = createRequire(path.join(process.argv[2], "_"))("jsonc-parser");
const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  const text = JSON.parse(line);
  const errors = [];
  const value = jsonc.parse(text, errors, { allowTrailingComma: true });
  // 1e400 reads as Infinity, which JSON would turn into null: mark it instead
  const marked = (key, v) => (typeof v === "number" && !Number.isFinite(v) ? { [NONFINITE]: String(v) } : v);
  process.stdout.write(JSON.stringify({ errors: errors.map((e) => [e.error, e.offset]), value }, marked) + "\n");
});
