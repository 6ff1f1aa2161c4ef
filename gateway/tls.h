/*
 * tls — OpenSSL over memory BIOs (tls.c): server and client contexts, and a per-connection
 * engine the connection layer feeds with received ciphertext and drains into the
 * ciphertext queue before each send. Contexts: main thread (--check) or worker thread at
 * start and at each reload; connections: worker thread only.
 */
#ifndef GW_GATEWAY_TLS_H
#define GW_GATEWAY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_conn;
struct gw_tls_cfg;
struct gw_worker;

/* A server (is_server: a listener's) or client (a backend's) context made from t's files
 * and options: NULL on failure, with the failing field of the tls object ("cert_file",
 * "key_file", "ciphers", ...) in *field and a reason in why (nothing logged). Any thread; the
 * caller owns the context and lets go of it with gw_tls_ctx_free. */
void *gw_tls_ctx_new(const struct gw_tls_cfg *t, bool is_server, const char **field, char *why,
		     size_t n);
/* --check: load what t names as a context would; the failing field with a reason in why,
 * or NULL when all is well (main thread) */
const char *gw_tls_check(const struct gw_tls_cfg *t, bool is_server, char *why, size_t n);
/* Drop the caller's reference: connections made from ctx keep it alive until they close. */
void gw_tls_ctx_free(void *ctx);
int gw_tls_accept(struct gw_conn *c, void *ssl_ctx);
int gw_tls_connect(struct gw_worker *w, struct gw_conn *c, void *ssl_ctx, const char *host,
		   bool is_verify);
void gw_tls_encrypt(struct gw_conn *c);
void gw_tls_on_recv(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
void gw_tls_free(struct gw_conn *c);

#endif /* GW_GATEWAY_TLS_H */
