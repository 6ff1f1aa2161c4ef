/*
 * tls.c — TLS for client listeners and backend connections, with OpenSSL over memory BIOs:
 * OpenSSL never touches a socket. Ciphertext from a recv completion is written into the
 * connection's read BIO (the provided buffer goes straight back to the ring), plaintext is
 * read out and handed to the same code plain sockets use. On the way out, a connection's tx
 * queue holds plaintext; gw_tls_encrypt turns it into ciphertext in the connection's cipher
 * queue (ctq), which is what the socket sends. After every SSL call the write BIO is drained,
 * since handshakes, alerts and session tickets appear there as a side effect of reading.
 *
 * Contexts: one server context per TLS listener and one client context per TLS backend,
 * made by each worker at start and again at every reload (a context is never changed once
 * made: a reload builds a new one and swaps the pointer). An SSL object lives on its
 * connection, holds a reference on the context it was made from, and is freed with it.
 */
#include "gateway/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "gateway/chunk.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/log.h"
#include "gateway/worker.h"

#define TLS_READ_CHUNK (16 * 1024)

static void log_ssl_errors(const char *what, const char *name)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		gw_warn("tls=%s name=%s err=\"%s\"", what, name, buf);
	}
}

/*
 * Mozilla's "intermediate" TLS 1.2 suites: forward-secret key exchange and AEAD ciphers
 * only (no RSA key exchange, no CBC, no SHA-1). TLS 1.3 suites are OpenSSL's defaults.
 */
#define TLS12_DEFAULT_CIPHERS                                                          \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                   \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                   \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                   \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

/*
 * A context as a listener (is_server) or a backend uses it, built from t's files: NULL on
 * failure, with the failing field of the tls object ("ciphers", "cert_file", "key_file",
 * "client_ca_file", "ca_file") in *field and OpenSSL's reason in why. Start-up, reloads and
 * --check share it, so --check refuses exactly what a worker would.
 */
static SSL_CTX *build_ctx(const struct gw_tls_cfg *t, bool is_server, const char **field,
			  char *why, size_t n)
{
	SSL_CTX *ctx = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
	const char *f = NULL;
	unsigned long e;

	if (!ctx) {
		snprintf(why, n, "OpenSSL could not make a context");
		*field = "tls";
		return NULL;
	}
	ERR_clear_error();
	SSL_CTX_set_min_proto_version(ctx, t->min_version == 13 ? TLS1_3_VERSION :
						       TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : TLS12_DEFAULT_CIPHERS) != 1)
		f = "ciphers";
	else if (t->cert_file && SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1)
		f = "cert_file";
	else if (t->key_file &&
		 SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1)
		f = "key_file";
	else if (t->cert_file && t->key_file && SSL_CTX_check_private_key(ctx) != 1)
		f = "key_file";
	else if (t->client_ca_file &&
		 SSL_CTX_load_verify_locations(ctx, t->client_ca_file, NULL) != 1)
		f = "client_ca_file";
	else if (t->ca_file && SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1)
		f = "ca_file";
	else if (!is_server && t->is_verify && !t->ca_file &&
		 SSL_CTX_set_default_verify_paths(ctx) != 1)
		f = "ca_file";	/* null: the system store, which did not load */
	if (f) {
		char buf[256] = "";
		e = ERR_peek_last_error();
		if (e)
			ERR_error_string_n(e, buf, sizeof(buf));
		if (strcmp(f, "key_file") == 0 && t->cert_file && e &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			snprintf(why, n, "the key does not match cert_file (%s)", buf);
		else
			snprintf(why, n, "cannot be loaded: %s", e ? buf : "unknown OpenSSL error");
		ERR_clear_error();
		SSL_CTX_free(ctx);
		*field = f;
		return NULL;
	}
	if (is_server && t->client_ca_file)
		/* client certificates required and checked against this CA */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	if (!is_server && t->is_verify)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

const char *gw_tls_check(const struct gw_tls_cfg *t, bool is_server, char *why, size_t n)
{
	const char *field = NULL;
	SSL_CTX *ctx = build_ctx(t, is_server, &field, why, n);

	SSL_CTX_free(ctx);
	return ctx ? NULL : field;
}

void *gw_tls_ctx_new(const struct gw_tls_cfg *t, bool is_server, const char **field, char *why,
		     size_t n)
{
	return build_ctx(t, is_server, field, why, n);
}

void gw_tls_ctx_free(void *ctx)
{
	/*
	 * Dropping our reference only: SSL_new takes a reference on its SSL_CTX and SSL_free
	 * gives it back (SSL_CTX_free(3): "decrements the reference count ... frees ... if the
	 * reference count has reached 0"), so a context replaced by a reload lives on until the
	 * last connection made from it closes.
	 */
	SSL_CTX_free(ctx);
}

static int attach(struct gw_conn *c, SSL_CTX *ctx)
{
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());

	if (!ssl || !rbio || !wbio) {
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		return -ENOMEM;
	}
	/* an empty read BIO means "retry", not end of file */
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	c->ssl = ssl;
	return 0;
}

int gw_tls_accept(struct gw_conn *c, void *ssl_ctx)
{
	int ret = attach(c, ssl_ctx);

	if (ret == 0)
		SSL_set_accept_state(c->ssl);
	return ret;
}

/* Move whatever OpenSSL wrote into the write BIO onto the cipher queue. */
static void drain_wbio(struct gw_conn *c)
{
	BIO *wbio = SSL_get_wbio(c->ssl);
	uint8_t buf[16384];
	int n;

	while ((n = BIO_read(wbio, buf, sizeof(buf))) > 0)
		gw_chunkq_append(&c->ctq, buf, (size_t)n);
}

int gw_tls_connect(struct gw_worker *w, struct gw_conn *c, void *ssl_ctx, const char *host,
		   bool is_verify)
{
	struct in6_addr a6;
	struct in_addr a4;
	int ret = attach(c, ssl_ctx);

	if (ret < 0)
		return ret;
	SSL_set_connect_state(c->ssl);
	bool is_ip = inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, host);
	if (is_verify) {
		/* the certificate must name the host (or IP) we were told to reach */
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		if (is_ip)
			X509_VERIFY_PARAM_set1_ip_asc(vp, host);
		else
			SSL_set1_host(c->ssl, host);
	}
	ERR_clear_error();
	SSL_do_handshake(c->ssl);	/* writes the ClientHello */
	drain_wbio(c);
	gw_tx_kick(w, c);
	return 0;
}

void gw_tls_encrypt(struct gw_conn *c)
{
	if (!c->ssl || !SSL_is_init_finished(c->ssl))
		return;	/* plaintext waits for the handshake */
	while (c->txq.head) {
		struct gw_chunk *ch = c->txq.head;
		size_t left = ch->len - ch->off;
		while (left > 0) {
			size_t wrote = 0;
			ERR_clear_error();
			/* a memory BIO never fills, so an all-or-nothing write cannot stall */
			if (SSL_write_ex(c->ssl, gw_chunk_bytes(ch) + ch->off, left, &wrote) != 1)
				return;
			ch->off += wrote;
			c->txq.bytes -= wrote;
			left -= wrote;
		}
		c->txq.head = ch->next;
		if (!c->txq.head)
			c->txq.tail = NULL;
		gw_chunk_free(ch);
	}
	drain_wbio(c);
}

void gw_tls_on_recv(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	uint8_t plain[TLS_READ_CHUNK];

	if (BIO_write(SSL_get_rbio(c->ssl), p, (int)n) != (int)n) {
		gw_conn_close(w, c, "TLS buffer");
		return;
	}
	if (!SSL_is_init_finished(c->ssl)) {
		ERR_clear_error();
		int r = SSL_do_handshake(c->ssl);
		drain_wbio(c);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				gw_tx_kick(w, c);
				return;
			}
			gw_warn("conn=%llu peer=%s msg=\"TLS handshake failed: closing\"",
				(unsigned long long)c->id, c->peer);
			log_ssl_errors("handshake", c->peer);
			gw_tx_kick(w, c);	/* the alert, if any */
			gw_conn_close(w, c, "TLS handshake failed");
			return;
		}
		gw_debug("conn=%llu peer=%s msg=\"TLS up\" version=%s cipher=%s",
			 (unsigned long long)c->id, c->peer, SSL_get_version(c->ssl),
			 SSL_get_cipher_name(c->ssl));
	}
	while (!c->is_closing) {
		size_t got = 0;
		ERR_clear_error();
		int r = SSL_read_ex(c->ssl, plain, sizeof(plain), &got);
		if (r == 1) {
			gw_conn_deliver(w, c, plain, got);
			continue;
		}
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			gw_conn_close(w, c, "TLS close_notify");
		} else {
			log_ssl_errors("read", c->peer);
			gw_conn_close(w, c, "TLS error");
		}
		break;
	}
	if (!c->is_closing) {
		drain_wbio(c);
		gw_tx_kick(w, c);	/* encrypts plaintext that waited for the handshake */
	}
}

void gw_tls_free(struct gw_conn *c)
{
	SSL_free(c->ssl);	/* frees both BIOs */
	c->ssl = NULL;
	gw_chunkq_free(&c->ctq);
}
