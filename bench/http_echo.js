// HTTP/1.1 echo server for `python -m bench http`: Node's own http module, keep-alive.
// `node bench/http_echo.js PORT_FILE` listens on an ephemeral loopback port (written to
// PORT_FILE); a request with a body is answered with that body, one without with "ok".
// SIGTERM ends it.
"use strict";
const http = require("http");
const fs = require("fs");

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = chunks.length ? Buffer.concat(chunks) : Buffer.from("ok");
    res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  fs.writeFileSync(process.argv[2], String(server.address().port));
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
