// A Node consumer of `rotator proxy`: calls continuously until STOP_FILE exists,
// alternating GET and POST (each POST with its own X-Request-Id and that id in its body),
// one line per call to OUT_FILE: "<status> <method> <id> <seconds> <end, Unix time> <retry-after>".  No npm packages.
"use strict";
const http = require("http");
const fs = require("fs");
const [base, outFile, stopFile, prefix] = process.argv.slice(2);
const url = new URL(base);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const out = fs.createWriteStream(outFile, { flags: "a" });
let n = 0;

function call() {
  return new Promise((resolve) => {
    n += 1;
    const post = n % 2 === 0;
    const id = `${prefix}-${n}`;
    const body = post ? JSON.stringify({ id }) : "";
    const headers = { "X-Request-Id": id };
    if (post) { headers["Content-Type"] = "application/json"; headers["Content-Length"] = Buffer.byteLength(body); }
    const started = process.hrtime.bigint();
    const req = http.request(
      { host: url.hostname, port: url.port, path: "/v2/decisioning/models", method: post ? "POST" : "GET", headers, agent },
      (res) => {
        res.resume();
        res.on("end", () => {
          const secs = Number(process.hrtime.bigint() - started) / 1e9;
          out.write(`${res.statusCode} ${post ? "POST" : "GET"} ${id} ${secs.toFixed(4)} ${(Date.now() / 1000).toFixed(3)} ${res.headers["retry-after"] || "-"}\n`);
          resolve();
        });
      },
    );
    req.on("error", (err) => {
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      out.write(`ERR ${post ? "POST" : "GET"} ${id} ${secs.toFixed(4)} ${(Date.now() / 1000).toFixed(3)} ${err.code}\n`);
      resolve();
    });
    req.end(body);
  });
}

(async () => {
  while (!fs.existsSync(stopFile)) {
    await call();
    await new Promise((r) => setTimeout(r, 5));
  }
  out.end(() => process.exit(0));
})();
