/*
 * Interop tests: KX's Java driver (com.kx:javakdb 2.0) against a q endpoint.
 *
 * Run by tests/interop/run_interop.py, which points it at mockq or at qgate in front of one mockq
 * through the environment (QTEST_HOST, QTEST_PORT, QTEST_UNIX_PATH, QTEST_BACKEND_ID). A small
 * harness rather than JUnit keeps the offline Maven build to the compiler and dependency
 * plugins; it prints one line per test and closes with "N passed, N failed, N skipped".
 * Every name defined on the server starts with "java" so the other client families sharing the
 * backend never collide with it.
 */
package qgate.interop;

import com.kx.c;

import java.util.Arrays;
import java.util.Objects;

public final class InteropMain {
	private static final String HOST = env("QTEST_HOST", "127.0.0.1");
	private static final int PORT = Integer.parseInt(env("QTEST_PORT", "0"));
	private static final String UNIX_PATH = System.getenv("QTEST_UNIX_PATH");
	private static final String BACKEND_ID = System.getenv("QTEST_BACKEND_ID");
	private static final int TIMEOUT_MS = 10000;

	private int passed;
	private int failed;
	private int skipped;

	@FunctionalInterface
	private interface Body {
		void run(c conn) throws Exception;
	}

	private static String env(String name, String dflt) {
		String v = System.getenv(name);
		return v == null || v.isEmpty() ? dflt : v;
	}

	private static void check(boolean cond, String what) {
		if (!cond)
			throw new AssertionError(what);
	}

	private static void checkEq(Object want, Object got) {
		if (!Objects.deepEquals(want, got))
			throw new AssertionError("expected " + show(want) + ", got " + show(got));
	}

	private static String show(Object o) {
		if (o instanceof long[])
			return Arrays.toString((long[]) o);
		if (o instanceof char[])
			return "\"" + new String((char[]) o) + "\"";
		return o == null ? "null" : o + " (" + o.getClass().getSimpleName() + ")";
	}

	/* the q error a call raised, or an AssertionError when it raised none */
	private static String qError(c conn, String expr) throws Exception {
		try {
			Object r = conn.k(expr);
			throw new AssertionError("expected a q error, got " + show(r));
		} catch (c.KException e) {
			return e.getMessage();
		}
	}

	private static c tcp() throws Exception {
		c conn = new c(HOST, PORT, "java:interop");
		// bounds every read: a gateway that never answers fails the test instead of hanging
		if (conn.s != null)
			conn.s.setSoTimeout(TIMEOUT_MS);
		return conn;
	}

	private void test(String name, Body body) {
		try {
			c conn = tcp();
			try {
				body.run(conn);
			} finally {
				conn.close();
			}
			passed++;
			System.out.println("ok - " + name);
		} catch (Throwable t) {
			failed++;
			System.out.println("not ok - " + name + ": " + t);
		}
	}

	private void unixTest() {
		String name = "unix socket: sync, async, error";
		if (UNIX_PATH == null || UNIX_PATH.isEmpty()) {
			// java.net.UnixDomainSocketAddress refuses NUL, so q's abstract @/tmp/kx.PORT is
			// out of reach; only a filesystem socket (qgate "unix:/path") can be tested.
			skipped++;
			System.out.println("skip - " + name + ": no filesystem unix socket (QTEST_UNIX_PATH)");
			return;
		}
		try {
			c conn = new c(UNIX_PATH, "java:interop");
			try {
				checkEq(2L, conn.k("1+1"));
				conn.ks("javaux:99");
				checkEq(99L, conn.k("javaux"));
				checkEq("java unix", qError(conn, ".mock.error[\"java unix\"]"));
			} finally {
				conn.close();
			}
			passed++;
			System.out.println("ok - " + name);
		} catch (Throwable t) {
			failed++;
			System.out.println("not ok - " + name + ": " + t);
		}
	}

	private int run() {
		test("sync 1+1", conn -> checkEq(2L, conn.k("1+1")));
		test("sync til 10", conn -> checkEq(new long[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
						      conn.k("til 10")));
		test("lambda applied to args", conn -> checkEq(6L, conn.k("{x+y+z}", 1L, 2L, 3L)));
		test("string-head call with a long", conn -> checkEq(42L, conn.k(".mock.echo", 42L)));
		test("string-head call with a string (applied, not evaluated)",
		     conn -> checkEq("hello".toCharArray(), conn.k(".mock.echo", "hello".toCharArray())));
		test("define then call", conn -> {
			conn.k(".java.add:{x+y}");
			checkEq(5L, conn.k(".java.add", 2L, 3L));
		});
		test("async assign then sync read", conn -> {
			conn.ks("javavar:42");
			checkEq(42L, conn.k("javavar"));
		});
		test("async set then sync read", conn -> {
			// a Java String is sent as a q symbol
			conn.ks("set", "javaset", 7L);
			checkEq(7L, conn.k("javaset"));
		});
		test("backend id", conn -> {
			Object id = conn.k(".mock.id[]");
			check(id instanceof String, "expected a symbol, got " + show(id));
			if (BACKEND_ID != null)
				checkEq(BACKEND_ID, id);
		});
		test("q error raises KException with its message",
		     conn -> checkEq("java boom", qError(conn, ".mock.error[\"java boom\"]")));
		test("type error, then the connection still answers", conn -> {
			checkEq("type", qError(conn, "1+`a"));
			checkEq(5L, conn.k("2+3"));
		});
		unixTest();
		System.out.println(passed + " passed, " + failed + " failed, " + skipped + " skipped");
		return failed == 0 ? 0 : 1;
	}

	public static void main(String[] args) {
		if (PORT == 0) {
			System.out.println("QTEST_PORT not set (run via tests/interop/run_interop.py)");
			System.exit(2);
		}
		System.exit(new InteropMain().run());
	}
}
