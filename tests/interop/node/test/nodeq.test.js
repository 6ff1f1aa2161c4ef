// Interop tests: node-q (npm "node-q") against a q endpoint, with node's built-in test runner.
//
// The endpoint comes from tests/interop/run_interop.py: mockq directly, or qgate in front of one
// mockq. Environment:
//   QTEST_HOST, QTEST_PORT  TCP endpoint (required)
//   QTEST_UNIX_PATH         a filesystem unix socket of the same endpoint (qgate "unix:/path").
//                           q's own abstract socket (@/tmp/kx.PORT) is out of node's reach: node
//                           connects with the whole sockaddr_un length, so the name it asks for is
//                           padded with NULs and never matches the one q binds.
//   QTEST_BACKEND_ID        name of the (single) mockq behind the endpoint, for .mock.id[]
//   QTEST_MODE              "direct" or "gateway"
// Every name defined on the server starts with "node" so the other client families sharing the
// backend never collide with it.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const nodeq = require("node-q");
const Long = require("long");

// a q long (node-q takes longs only as Long objects; a plain number would be a float)
const J = (n) => nodeq.long(Long.fromInt(n));

const HOST = process.env.QTEST_HOST || "127.0.0.1";
const PORT = Number(process.env.QTEST_PORT || 0);
const UNIX_PATH = process.env.QTEST_UNIX_PATH;
const BACKEND_ID = process.env.QTEST_BACKEND_ID;
const MODE = process.env.QTEST_MODE || "direct";
const T = { timeout: 10000 };

if (!PORT)
	throw new Error("QTEST_PORT not set (run via tests/interop/run_interop.py)");

function connect(params) {
	return new Promise((resolve, reject) => {
		nodeq.connect(Object.assign({ socketTimeout: 10000 }, params), (err, con) => {
			if (err)
				reject(err);
			else
				resolve(con);
		});
	});
}

// con.k(query, args..., cb) as a promise; rejects with the q error as an Error.
function k(con, ...args) {
	return new Promise((resolve, reject) => {
		con.k(...args, (err, res) => (err ? reject(err) : resolve(res)));
	});
}

// con.ks(query, args..., cb): async message, resolves once written.
function ks(con, ...args) {
	return new Promise((resolve, reject) => {
		con.ks(...args, (err) => (err ? reject(err) : resolve()));
	});
}

function close(con) {
	return new Promise((resolve) => con.close(resolve));
}

async function withTcp(fn) {
	const con = await connect({ host: HOST, port: PORT });
	try {
		return await fn(con);
	} finally {
		await close(con);
	}
}

test("sync 1+1", T, () => withTcp(async (con) => {
	assert.equal(await k(con, "1+1"), 2);
}));

test("sync til 10", T, () => withTcp(async (con) => {
	assert.deepEqual(await k(con, "til 10"), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}));

test("lambda applied to args", T, () => withTcp(async (con) => {
	const r = await k(con, "{x+y+z}", J(1), J(2), J(3));
	assert.equal(r, 6);
}));

test("string-head call with a long", T, () => withTcp(async (con) => {
	assert.equal(await k(con, ".mock.echo", J(42)), 42);
}));

test("string-head call with a string (applied, not evaluated)", T, () => withTcp(async (con) => {
	assert.equal(await k(con, ".mock.echo", "hello"), "hello");
}));

test("define then call", T, () => withTcp(async (con) => {
	await k(con, ".node.add:{x+y}");
	assert.equal(await k(con, ".node.add", J(2), J(3)), 5);
}));

test("async assign then sync read", T, () => withTcp(async (con) => {
	await ks(con, "nodevar:42");
	assert.equal(await k(con, "nodevar"), 42);
}));

test("async set then sync read", T, () => withTcp(async (con) => {
	await ks(con, "set", nodeq.symbol("nodeset"), J(7));
	assert.equal(await k(con, "nodeset"), 7);
}));

test("backend id", T, () => withTcp(async (con) => {
	const id = await k(con, ".mock.id[]");
	assert.equal(typeof id, "string");
	if (BACKEND_ID)
		assert.equal(id, BACKEND_ID);
}));

test("q error rejects with its message", T, () => withTcp(async (con) => {
	await assert.rejects(k(con, '.mock.error["node boom"]'), { message: "node boom" });
}));

test("type error, then the connection still answers", T, () => withTcp(async (con) => {
	await assert.rejects(k(con, "1+`a"), { message: "type" });
	assert.equal(await k(con, "2+3"), 5);
}));

test("published upd messages reach the client", { timeout: 10000, skip: MODE !== "direct" &&
	"query-mode gateway drops messages a backend starts on a shared connection (product.md 5)" },
() => withTcp(async (con) => {
	const got = [];
	const done = new Promise((resolve) => {
		// node-q emits async ("upd"; a; b...) messages as events named "upd"
		con.on("upd", (...args) => {
			got.push(args);
			if (got.length === 3)
				resolve();
		});
	});
	await k(con, ".mock.pub[3;1]");
	await done;
	assert.equal(got.length, 3);
}));

test("unix socket: sync and async", { timeout: 10000, skip: !UNIX_PATH &&
	"no filesystem unix socket (QTEST_UNIX_PATH) on this endpoint" },
async () => {
	const con = await connect({ unixSocket: UNIX_PATH });
	try {
		assert.equal(await k(con, "1+1"), 2);
		await ks(con, "nodeux:99");
		assert.equal(await k(con, "nodeux"), 99);
		await assert.rejects(k(con, '.mock.error["node unix"]'), { message: "node unix" });
	} finally {
		await close(con);
	}
});
