// Drives the fault proxy with the npm toxiproxy-node-client, unchanged, through every call it
// makes and every error path. Usage: node conformance.js API_URL ECHO_PORT. Exits non-zero on
// the first failed assertion.
"use strict";
const assert = require("node:assert/strict");
const net = require("node:net");
const { Toxiproxy, ToxiproxyError } = require("toxiproxy-node-client");

const [apiUrl, echoPort] = process.argv.slice(2);

function roundtrip(listen, payload = "ping") {
  const [host, port] = [listen.slice(0, listen.lastIndexOf(":")), Number(listen.slice(listen.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = net.connect({ host, port }, () => socket.write(payload));
    let data = "";
    socket.on("data", (chunk) => {
      data += chunk.toString();
      if (data.length >= payload.length) {
        socket.end();
        resolve({ data, ms: Number(process.hrtime.bigint() - started) / 1e6 });
      }
    });
    socket.on("error", reject);
  });
}

async function rejectsWithStatus(promise, status) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof ToxiproxyError, `expected ToxiproxyError, got ${err}`);
    assert.equal(err.message, `Request failed with status code ${status}`);
    return true;
  });
}

async function main() {
  const toxiproxy = new Toxiproxy(apiUrl);
  const version = await toxiproxy.getVersion();
  assert.match(version, /^\{"version": "2\.\d+\.\d+"\}\n$/);

  const upstream = `127.0.0.1:${echoPort}`;
  const proxy = await toxiproxy.createProxy({ name: "node", listen: "localhost:0", upstream });
  assert.equal(proxy.name, "node");
  assert.equal(proxy.upstream, upstream);
  assert.equal(proxy.enabled, true);
  assert.match(proxy.listen, /^127\.0\.0\.1:\d+$/);
  assert.equal((await roundtrip(proxy.listen)).data, "ping");
  await rejectsWithStatus(toxiproxy.createProxy({ name: "node", upstream }), 409);
  await rejectsWithStatus(toxiproxy.createProxy({ upstream }), 400);
  await rejectsWithStatus(toxiproxy.get("ghost"), 404);

  const all = await toxiproxy.getAll();
  assert.deepEqual(Object.keys(all), ["node"]);
  assert.deepEqual(all.node.toJson(), proxy.toJson());
  const fetched = await toxiproxy.get("node");
  assert.deepEqual(fetched.toJson(), proxy.toJson());

  const disabled = await proxy.update({ enabled: false });
  assert.equal(disabled.enabled, false);
  const enabled = await proxy.update({ enabled: true });
  assert.equal(enabled.enabled, true);
  assert.equal(enabled.listen, proxy.listen);

  const toxic = await proxy.addToxic({
    type: "latency",
    name: "lag",
    stream: "downstream",
    toxicity: 1,
    attributes: { latency: 120, jitter: 0 },
  });
  assert.deepEqual(toxic.toJson(), {
    attributes: { latency: 120, jitter: 0 },
    name: "lag",
    stream: "downstream",
    toxicity: 1,
    type: "latency",
  });
  const { data, ms } = await roundtrip(proxy.listen);
  assert.equal(data, "ping");
  assert.ok(ms >= 115 && ms < 600, `latency ${ms} ms`);
  await rejectsWithStatus(proxy.addToxic({ type: "latency", name: "lag", stream: "upstream", toxicity: 1, attributes: {} }), 409);
  await rejectsWithStatus(proxy.addToxic({ type: "warp", name: "w", stream: "upstream", toxicity: 1, attributes: {} }), 400);
  await rejectsWithStatus(proxy.addToxic({ type: "latency", name: "s", stream: "sideways", toxicity: 1, attributes: {} }), 400);
  await rejectsWithStatus(proxy.getToxic("ghost"), 404);

  const got = await proxy.getToxic("lag");
  assert.deepEqual(got.toJson(), toxic.toJson());
  const updated = await got.update({ attributes: { jitter: 10 }, toxicity: 0.5 });
  assert.deepEqual(updated.attributes, { latency: 120, jitter: 10 });
  assert.equal(updated.toxicity, 0.5);
  await updated.remove();
  await rejectsWithStatus(proxy.getToxic("lag"), 404);
  await rejectsWithStatus(updated.remove(), 404);

  await proxy.addToxic({ type: "timeout", name: "t", stream: "upstream", toxicity: 1, attributes: { timeout: 0 } });
  await toxiproxy.reset();
  await rejectsWithStatus(proxy.getToxic("t"), 404);

  const populated = await toxiproxy.populate([
    { name: "node", listen: proxy.listen, upstream },
    { name: "extra", listen: "localhost:0", upstream },
  ]);
  assert.deepEqual(Object.keys(populated).sort(), ["extra", "node"]);
  assert.equal(populated.node.listen, proxy.listen);
  await rejectsWithStatus(toxiproxy.populate({ name: "not-an-array" }), 400);
  await rejectsWithStatus(toxiproxy.populate([{ name: "noupstream" }]), 400);

  await populated.extra.remove();
  await proxy.remove();
  await rejectsWithStatus(proxy.remove(), 404);
  assert.deepEqual(await toxiproxy.getAll(), {});
  console.log("node conformance: all checks passed");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
