/*
 * tls — OpenSSL over memory BIOs (tls.c): server and client contexts, and a per-connection
 * engine the connection layer feeds with received ciphertext and drains into the
 * ciphertext queue before each send. Contexts: main thread (--check) or worker thread at
 * (re)load; connections: worker thread only.
 */
#ifndef GW_GATEWAY_TLS_H
#define GW_GATEWAY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_backend_cfg;
struct gw_conn;
struct gw_listener_cfg;
struct gw_tls_cfg;
struct gw_worker;

/* a listener's server context / a backend's client context (NULL on error, logged) */
void *gw_tls_server_ctx(const struct gw_listener_cfg *l);
void *gw_tls_client_ctx(const struct gw_backend_cfg *b);
/* --check: load what t names as a context would; the failing field ("cert_file", "key_file",
 * "ciphers", ...) with a reason in why, or NULL when all is well (main thread) */
const char *gw_tls_check(const struct gw_tls_cfg *t, bool is_server, char *why, size_t n);
void gw_tls_ctx_free(void *ctx);
int gw_tls_accept(struct gw_conn *c, void *ssl_ctx);
int gw_tls_connect(struct gw_worker *w, struct gw_conn *c, void *ssl_ctx, const char *host,
		   bool is_verify);
void gw_tls_encrypt(struct gw_conn *c);
void gw_tls_on_recv(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
void gw_tls_free(struct gw_conn *c);

#endif /* GW_GATEWAY_TLS_H */
