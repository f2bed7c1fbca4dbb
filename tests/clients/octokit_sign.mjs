// Signs stdin with octokit's method (@octokit/webhooks-methods `sign`, what GitHub's
// own libraries use): prints `sha256=<hex>`. Exit 3 when the package is not installed.
// Usage: node octokit_sign.mjs <secret> < body
let sign;
try {
  ({ sign } = await import("@octokit/webhooks-methods"));
} catch {
  process.exit(3);
}
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
process.stdout.write(await sign(process.argv[2], Buffer.concat(chunks).toString("utf8")));
